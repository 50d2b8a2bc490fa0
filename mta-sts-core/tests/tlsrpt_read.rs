//! The reader of received TLSRPT reports (`mta_sts_core::tlsrpt::read_report`): T11 (real
//! reports and layouts are read, with the warnings they earn) and T12 (hostile input gives a
//! typed error in bounded memory and time).
//!
//! Test data: `tests/data/tlsrpt/` (see its README.md for where each file comes from).
#![cfg(feature = "tlsrpt")]

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use flate2::Compression;
use flate2::write::GzEncoder;
use mta_sts_core::tlsrpt::{
    MAX_WARNINGS, ReadErrorKind, ReadLimits, ReadReport, Report, ReportFormat, ReportWarningKind,
    ResultType, parse_datetime, read_report, validate,
};
use serde_json::{Value, json};

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/tlsrpt")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read(bytes: &[u8]) -> ReadReport {
    read_report(bytes, &ReadLimits::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn warnings(read: &ReadReport) -> Vec<String> {
    read.warnings.iter().map(ToString::to_string).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The RFC 8460 Appendix B example with the one line the RFC's layout wrapped inside a string
/// joined again (the RFC text wraps `additional-information` at 72 columns).
fn rfc_example_unwrapped() -> Vec<u8> {
    let text = String::from_utf8(data("rfc8460-appendix-b.txt")).unwrap();
    text.replace(
        "company-x.example/\n           report_info",
        "company-x.example/report_info",
    )
    .into_bytes()
}

#[test]
fn t11_rfc8460_appendix_b_as_printed_fails_at_the_wrapped_string_and_reads_unwrapped() {
    // As printed, the wrapped string holds a raw line break: not JSON (RFC 8259 §7).
    let printed = data("rfc8460-appendix-b.txt");
    let err = read_report(&printed, &ReadLimits::default()).unwrap_err();
    assert!(matches!(err.kind(), ReadErrorKind::Syntax { .. }), "{err}");
    assert_eq!((err.line(), err.column()), (Some(32), Some(71)), "{err}");
    assert!(
        err.to_string()
            .starts_with("JSON line 32 column 71: not JSON: control character")
    );

    let read = read(&rfc_example_unwrapped());
    assert_eq!(read.format, ReportFormat::Json);
    let r = &read.report;
    assert_eq!(r.organization_name, "Company-X");
    assert_eq!(r.date_range.start_datetime, "2016-04-01T00:00:00Z");
    assert_eq!(r.date_range.end_datetime, "2016-04-01T23:59:59Z");
    assert_eq!(r.contact_info, "sts-reporting@company-x.example");
    assert_eq!(r.report_id, "5065427c-23d3-47ca-b6e0-946ea0e8c4be");
    assert_eq!(r.policies.len(), 1);
    let p = &r.policies[0];
    assert_eq!(p.policy.policy_type, "sts");
    assert_eq!(
        p.policy.policy_string,
        [
            "version: STSv1",
            "mode: testing",
            "mx: *.mail.company-y.example",
            "max_age: 86400"
        ]
    );
    assert_eq!(p.policy.policy_domain, "company-y.example");
    assert_eq!(p.policy.mx_host, ["*.mail.company-y.example"]);
    assert_eq!(p.summary.total_successful_session_count, 5326);
    assert_eq!(p.summary.total_failure_session_count, 303);
    let d = &p.failure_details;
    assert_eq!(d.len(), 3);
    let counts: Vec<(&str, u64)> = d
        .iter()
        .map(|f| (f.result_type.as_str(), f.failed_session_count))
        .collect();
    assert_eq!(
        counts,
        [
            ("certificate-expired", 100),
            ("starttls-not-supported", 200),
            ("validation-failure", 3)
        ]
    );
    assert_eq!(
        d.iter().map(|f| f.failed_session_count).sum::<u64>(),
        p.summary.total_failure_session_count
    );
    assert_eq!(
        d[0].sending_mta_ip.as_deref(),
        Some("2001:db8:abcd:0012::1")
    );
    assert_eq!(
        d[0].receiving_mx_hostname.as_deref(),
        Some("mx1.mail.company-y.example")
    );
    assert_eq!(d[1].receiving_ip.as_deref(), Some("203.0.113.56"));
    assert_eq!(
        d[1].additional_information.as_deref(),
        Some(
            "https://reports.company-x.example/report_info ? id = 5065427 c - 23 d3# StarttlsNotSupported "
        )
    );
    assert_eq!(d[2].sending_mta_ip.as_deref(), Some("198.51.100.62"));
    assert_eq!(d[2].receiving_ip.as_deref(), Some("203.0.113.58"));
    assert_eq!(
        d[2].receiving_mx_hostname.as_deref(),
        Some("mx-backup.mail.company-y.example")
    );
    assert_eq!(
        d[2].failure_reason_code.as_deref(),
        Some("X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED")
    );
    // Totals agree; the example's one flaw is its first failure without the MX's address.
    assert_eq!(
        warnings(&read),
        [
            "policies[0].failure-details[0].receiving-ip: a certificate-expired failure without receiving-ip"
        ]
    );
}

const GOOGLE: &str = r#"{"organization-name":"Google Inc.","date-range":{"start-datetime":"2024-05-01T00:00:00Z","end-datetime":"2024-05-01T23:59:59Z"},"contact-info":"smtp-tls-reporting@google.com","report-id":"2024-05-01T00:00:00Z_example.com","policies":[{"policy":{"policy-type":"sts","policy-string":["version: STSv1","mode: testing","mx: mx1.example.com","max_age: 86400"],"policy-domain":"example.com"},"summary":{"total-successful-session-count":12,"total-failure-session-count":0}}]}"#;

fn check_google(read: &ReadReport) {
    let r = &read.report;
    assert_eq!(r.organization_name, "Google Inc.");
    assert_eq!(r.contact_info, "smtp-tls-reporting@google.com");
    assert_eq!(r.report_id, "2024-05-01T00:00:00Z_example.com");
    assert_eq!(r.policies.len(), 1);
    assert_eq!(r.policies[0].policy.policy_domain, "example.com");
    assert_eq!(r.policies[0].policy.policy_string[1], "mode: testing");
    assert_eq!(r.policies[0].summary.total_successful_session_count, 12);
    assert_eq!(r.policies[0].summary.total_failure_session_count, 0);
    assert!(r.policies[0].failure_details.is_empty());
    // Google leaves out `mx-host`, but its policy-string has the `mx:` lines: nothing is lost,
    // nothing to warn about.
    assert!(warnings(read).is_empty(), "{:?}", warnings(read));
}

#[test]
fn t11_google_report_gzipped_in_a_multipart_report_mail() {
    let mail = data("google-2024-05-01.eml");
    let read = read(&mail);
    assert_eq!(read.format, ReportFormat::Mail);
    check_google(&read);
    // The test file's attachment is the JSON above, gzipped.
    assert_eq!(data("google-2024-05-01.json"), GOOGLE.as_bytes());
}

#[test]
fn t11_google_report_as_json_and_as_gzip() {
    let json = read(GOOGLE.as_bytes());
    assert_eq!(json.format, ReportFormat::Json);
    check_google(&json);
    let gz = read(&gzip(GOOGLE.as_bytes()));
    assert_eq!(gz.format, ReportFormat::Gzip);
    check_google(&gz);
    assert_eq!(json.report, gz.report);
    // A byte order mark and white space before the JSON are skipped.
    let mut bom = b"\xef\xbb\xbf \r\n".to_vec();
    bom.extend_from_slice(GOOGLE.as_bytes());
    assert_eq!(read(&bom).report, json.report);
}

#[test]
fn t11_real_google_mail_from_parsedmarc_no_policy_found() {
    let read = read(&data("parsedmarc-google.com_smtp_tls_report.eml"));
    assert_eq!(read.format, ReportFormat::Mail);
    let r = &read.report;
    assert_eq!(r.report_id, "2024-09-03T00:00:00Z_cardinalhealth.ca");
    assert_eq!(r.policies[0].policy.policy_type, "no-policy-found");
    assert_eq!(r.policies[0].policy.policy_domain, "cardinalhealth.ca");
    assert_eq!(r.policies[0].summary.total_successful_session_count, 48);
    assert_eq!(r.policies[0].summary.total_failure_session_count, 0);
    assert_eq!(warnings(&read), Vec::<String>::new());
}

#[test]
fn t11_microsoft_style_mx_host_as_a_string_and_under_mx_host_pattern() {
    let a = read(&data("microsoft-style-mx-host-string.json"));
    let b = read(&data("microsoft-style-mx-host-pattern.json"));
    for r in [&a, &b] {
        assert_eq!(r.report.organization_name, "Microsoft Corporation");
        assert_eq!(r.report.policies[0].policy.mx_host, ["*.example.com"]);
        assert_eq!(
            r.report.policies[0].summary.total_successful_session_count,
            140
        );
        assert_eq!(r.report.policies[0].summary.total_failure_session_count, 2);
        assert_eq!(warnings(r), Vec::<String>::new());
    }
    assert_eq!(a.report, b.report);
}

#[test]
fn t11_ported_reports_of_mail_auth_and_parsedmarc_read_with_their_warnings() {
    let cases: [(&str, &[&str]); 6] = [
        (
            "mail-auth-rpt01.json",
            &[
                "policies[0].failure-details[0].receiving-ip: a certificate-expired failure without receiving-ip",
            ],
        ),
        (
            // Google's reports once covered a week.
            "mail-auth-rpt02.json",
            &["date-range: the range is 604799 s long, not one day"],
        ),
        (
            "mail-auth-rpt03.json",
            &[
                "policies[0].policy.policy-domain: missing or empty",
                "policies[1].policy.policy-type: unknown policy type \"invalid-policy-type\" (RFC 8460: sts, tlsa, no-policy-found)",
                "policies[1].policy.policy-domain: missing or empty",
            ],
        ),
        (
            // Mail.ru: the day ends at the next midnight (accepted), the details add up to 2.
            "parsedmarc-mail.ru.json",
            &[
                "policies[0].policy.policy-string: an sts policy without policy-string",
                "policies[0].policy.mx-host: an sts policy without mx-host",
                "policies[0].summary.total-failure-session-count: total-failure-session-count is 1 but the failure details add up to 2",
            ],
        ),
        ("parsedmarc-smtp_tls.json", &[]),
        (
            // Empty strings for the MX of a policy failure: nothing to say about them.
            "parsedmarc-empty_failure_detail_fields.json",
            &[],
        ),
    ];
    for (file, expected) in cases {
        let read = read(&data(file));
        assert_eq!(warnings(&read), expected, "{file}");
    }
    let rpt01 = read(&data("mail-auth-rpt01.json"));
    assert_eq!(
        rpt01.report.policies[0].summary.total_failure_session_count,
        303
    );
    // rpt01 is the RFC example (mx-host as an array, the URI as the RFC's layout made it).
    assert_eq!(rpt01.report, read(&rfc_example_unwrapped()).report);
    let mailru = read(&data("parsedmarc-mail.ru.json"));
    assert_eq!(
        mailru.report.policies[0].failure_details[1]
            .failure_reason_code
            .as_deref(),
        Some("bad https response code: 500")
    );
}

/// A report without warnings, changed by `edit`, validated.
fn warnings_after(edit: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut v: Value =
        serde_json::from_slice(&data("microsoft-style-mx-host-string.json")).unwrap();
    edit(&mut v);
    let bytes = serde_json::to_vec(&v).unwrap();
    warnings(&read(&bytes))
}

#[test]
fn t11_each_report_warning_names_its_field() {
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let set = |path: &'static str, value: Value| -> Edit {
        Box::new(move |v: &mut Value| *v.pointer_mut(path).unwrap() = value)
    };
    let remove = |parent: &'static str, key: &'static str| -> Edit {
        Box::new(move |v: &mut Value| {
            v.pointer_mut(parent)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .remove(key);
        })
    };
    let cases: Vec<(Edit, &[&str])> = vec![
        (
            set("/policies/0/summary/total-failure-session-count", json!(5)),
            &[
                "policies[0].summary.total-failure-session-count: total-failure-session-count is 5 but the failure details add up to 2",
            ],
        ),
        (
            set("/organization-name", json!("")),
            &["organization-name: missing or empty"],
        ),
        (
            remove("", "organization-name"),
            &["organization-name: missing or empty"],
        ),
        (
            set("/contact-info", json!(" ")),
            &["contact-info: missing or empty"],
        ),
        (remove("", "report-id"), &["report-id: missing or empty"]),
        (
            set("/report-id", Value::Null),
            &["report-id: missing or empty"],
        ),
        (
            set("/policies/0/policy/policy-domain", json!("")),
            &["policies[0].policy.policy-domain: missing or empty"],
        ),
        (
            remove("/policies/0/policy", "policy-type"),
            &["policies[0].policy.policy-type: missing or empty"],
        ),
        (
            set("/policies/0/policy/policy-type", json!("STS")),
            &[
                "policies[0].policy.policy-type: unknown policy type \"STS\" (RFC 8460: sts, tlsa, no-policy-found)",
            ],
        ),
        (
            set(
                "/policies/0/failure-details/0/result-type",
                json!("certificate_expired"),
            ),
            &[
                "policies[0].failure-details[0].result-type: unknown result type \"certificate_expired\" (not one of RFC 8460 §4.3)",
            ],
        ),
        (
            remove("/policies/0/failure-details/0", "result-type"),
            &["policies[0].failure-details[0].result-type: missing or empty"],
        ),
        (
            set("/date-range/start-datetime", json!("2024-05-01 00:00:00")),
            &["date-range.start-datetime: \"2024-05-01 00:00:00\" is not an RFC 3339 date-time"],
        ),
        (
            set("/date-range/end-datetime", json!("1714607999")),
            &["date-range.end-datetime: \"1714607999\" is not an RFC 3339 date-time"],
        ),
        (
            remove("/date-range", "end-datetime"),
            &["date-range.end-datetime: missing or empty"],
        ),
        (
            set(
                "/date-range/start-datetime",
                json!("2024-05-01T00:00:00+02:00"),
            ),
            &[
                "date-range.start-datetime: \"2024-05-01T00:00:00+02:00\" is not midnight UTC (a report covers a UTC day)",
                "date-range: the range is 93599 s long, not one day",
            ],
        ),
        (
            set("/date-range/end-datetime", json!("2024-05-01T12:00:00Z")),
            &[
                "date-range.end-datetime: \"2024-05-01T12:00:00Z\" is neither 23:59:59Z nor the next midnight UTC (a report covers a UTC day)",
                "date-range: the range is 43200 s long, not one day",
            ],
        ),
        (
            set("/date-range/end-datetime", json!("2024-04-30T23:59:59Z")),
            &["date-range: end-datetime is before start-datetime"],
        ),
        (
            set("/date-range/end-datetime", json!("2024-05-07T23:59:59Z")),
            &["date-range: the range is 604799 s long, not one day"],
        ),
        (
            remove("/policies/0/policy", "policy-string"),
            &["policies[0].policy.policy-string: an sts policy without policy-string"],
        ),
        (
            // Without `mx-host` and without `mx:` lines in policy-string (with them, the
            // patterns are there: Google's reports).
            Box::new(|v: &mut Value| {
                v["policies"][0]["policy"]["mx-host"] = json!([]);
                v["policies"][0]["policy"]["policy-string"] =
                    json!(["version: STSv1", "mode: testing", "max_age: 86400"]);
            }),
            &["policies[0].policy.mx-host: an sts policy without mx-host"],
        ),
        (
            remove("/policies/0/failure-details/0", "receiving-mx-hostname"),
            &[
                "policies[0].failure-details[0].receiving-mx-hostname: a certificate-expired failure without receiving-mx-hostname",
            ],
        ),
        (
            set("/policies/0/failure-details/0/receiving-ip", json!("")),
            &[
                "policies[0].failure-details[0].receiving-ip: a certificate-expired failure without receiving-ip",
            ],
        ),
        (
            Box::new(|v: &mut Value| {
                let p = v["policies"][0].clone();
                v["policies"].as_array_mut().unwrap().push(p);
            }),
            &["policies[1].policy: the same policy as policies[0]"],
        ),
        (set("/policies", json!([])), &["policies: missing or empty"]),
    ];
    for (i, (edit, expected)) in cases.into_iter().enumerate() {
        assert_eq!(warnings_after(edit), expected, "case {i}");
    }
    // Not warned about: a policy failure without an MX, a tlsa policy without mx-host, a
    // fraction, an offset of zero, the next midnight as the end.
    assert_eq!(
        warnings_after(|v| {
            v["policies"][0]["failure-details"][0] =
                json!({"result-type": "sts-policy-fetch-error", "failed-session-count": 2});
            v["policies"][0]["policy"]["policy-type"] = json!("tlsa");
            v["policies"][0]["policy"]["mx-host"] = Value::Null;
            v["date-range"]["start-datetime"] = json!("2024-05-01T00:00:00.000+00:00");
            v["date-range"]["end-datetime"] = json!("2024-05-02T00:00:00Z");
        }),
        Vec::<String>::new()
    );
}

#[test]
fn t11_warnings_have_kinds_and_stop_at_the_limit() {
    let mut v: Value =
        serde_json::from_slice(&data("microsoft-style-mx-host-string.json")).unwrap();
    let detail = json!({"result-type": "nope", "failed-session-count": 1});
    v["policies"][0]["failure-details"] = Value::Array(vec![detail; 2 * MAX_WARNINGS]);
    v["policies"][0]["summary"]["total-failure-session-count"] = json!(2 * MAX_WARNINGS);
    let read = read(&serde_json::to_vec(&v).unwrap());
    assert_eq!(read.warnings.len(), MAX_WARNINGS + 1);
    assert!(matches!(
        read.warnings[0].kind(),
        ReportWarningKind::UnknownResultType { found } if found == "nope"
    ));
    assert_eq!(
        read.warnings[0].path(),
        "policies[0].failure-details[0].result-type"
    );
    assert_eq!(
        read.warnings[MAX_WARNINGS].kind(),
        &ReportWarningKind::Omitted {
            count: MAX_WARNINGS
        }
    );
    // validate() on a report built in code says the same as the reader.
    assert_eq!(validate(&read.report), read.warnings);
    assert!(
        validate(&Report::default())
            .iter()
            .any(|w| matches!(w.kind(), ReportWarningKind::Missing { field: "policies" }))
    );
    let rfc = read_report(&rfc_example_unwrapped(), &ReadLimits::default()).unwrap();
    assert!(matches!(
        rfc.warnings[0].kind(),
        ReportWarningKind::NegotiationFailureWithout {
            field: "receiving-ip",
            result_type: ResultType::CertificateExpired
        }
    ));
}

#[test]
fn t11_parse_datetime_reads_rfc3339() {
    let secs = |s: &str| parse_datetime(s).map(|t| t.as_secs());
    assert_eq!(secs("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(secs("2024-05-01T00:00:00Z"), Some(1_714_521_600));
    assert_eq!(secs("2024-05-01T23:59:59Z"), Some(1_714_607_999));
    assert_eq!(secs("2024-05-01t23:59:59.999999z"), Some(1_714_607_999));
    assert_eq!(secs("2024-05-01 23:59:59Z"), Some(1_714_607_999));
    assert_eq!(secs("2024-05-02T01:59:59+02:00"), Some(1_714_607_999));
    assert_eq!(secs("2024-05-01T18:59:59-05:00"), Some(1_714_607_999));
    assert_eq!(secs("2024-02-29T00:00:00Z"), Some(1_709_164_800));
    assert_eq!(secs("2016-12-31T23:59:60Z"), Some(1_483_228_800)); // a leap second
    for bad in [
        "",
        "2024-05-01",
        "2024-05-01T00:00:00",
        "2024-05-01T00:00Z",
        "2024-05-01T00:00:00.Z",
        "2024-05-01T00:00:00+0200",
        "2024-05-01T00:00:00+24:00",
        "2023-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-04-31T00:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T00:60:00Z",
        "2024-05-01T00:00:00Z ",
        "+2024-05-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:00:00+00:01",
        "２０２４-05-01T00:00:00Z",
    ] {
        assert_eq!(secs(bad), None, "{bad:?}");
    }
}

/// A mail around `part` (headers, then the body with its MIME headers).
fn mail(headers: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut m = headers.replace('\n', "\r\n").into_bytes();
    m.extend_from_slice(b"MIME-Version: 1.0\r\n\r\n");
    for (part_headers, body) in parts {
        m.extend_from_slice(b"--b1\r\n");
        m.extend_from_slice(part_headers.replace('\n', "\r\n").as_bytes());
        m.extend_from_slice(b"\r\n\r\n");
        m.extend_from_slice(body);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--b1--\r\n");
    m
}

fn base64(bytes: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    for (i, chunk) in bytes.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.extend_from_slice(b"\r\n");
        }
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for j in 0..4 {
            if j <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * j)) as usize & 63]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}

const REPORT_HEADERS: &str = "From: tlsrpt@mail.sender.example.com
To: tlsrpt@example.com
Subject: Report Domain: example.com Submitter: sender.example Report-ID: <1@sender.example>
TLS-Report-Domain: example.com
TLS-Report-Submitter: google.com
Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"b1\"
";

const TEXT_PART: (&str, &[u8]) = (
    "Content-Type: text/plain; charset=us-ascii",
    b"This is an aggregate TLS report.",
);

#[test]
fn t11_mail_warnings_and_the_media_types_real_reporters_use() {
    let gz = base64(&gzip(GOOGLE.as_bytes()));

    // The RFC's layout, the report as tlsrpt+json in quoted-printable-free 7bit: no mail warning.
    let m = mail(
        REPORT_HEADERS,
        &[
            TEXT_PART,
            ("Content-Type: application/tlsrpt+json", GOOGLE.as_bytes()),
        ],
    );
    assert!(warnings(&read(&m)).is_empty());

    // application/octet-stream named .json.gz, in a multipart/mixed mail without the headers.
    let m = mail(
        "From: a@b.example\nContent-Type: multipart/mixed; boundary=b1\n",
        &[
            TEXT_PART,
            (
                "Content-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"r.json.gz\"\nContent-Transfer-Encoding: base64",
                &gz,
            ),
        ],
    );
    let r = read(&m);
    assert_eq!(r.format, ReportFormat::Mail);
    assert_eq!(
        warnings(&r),
        [
            "message: the mail is multipart/mixed, not multipart/report; report-type=tlsrpt (RFC 8460 §5.3)",
            "message header TLS-Report-Domain: missing or empty (RFC 8460 §5.3)",
            "message header TLS-Report-Submitter: missing or empty (RFC 8460 §5.3)",
            "message part 3 (application/octet-stream \"r.json.gz\"): the report is in a part of type application/octet-stream named \"r.json.gz\", not application/tlsrpt+gzip or application/tlsrpt+json; read anyway",
        ]
    );
    assert!(matches!(
        r.warnings[3].kind(),
        ReportWarningKind::UnusualMediaType { .. }
    ));

    // application/json and application/gzip are read too; a gzip part that holds JSON is read
    // as JSON; two report parts: the first is read.
    let m = mail(
        REPORT_HEADERS,
        &[
            ("Content-Type: application/tlsrpt+gzip", GOOGLE.as_bytes()),
            (
                "Content-Type: application/tlsrpt+gzip\nContent-Transfer-Encoding: base64",
                &gz,
            ),
        ],
    );
    assert_eq!(
        warnings(&read(&m)),
        [
            "message: 2 report parts; the first was read",
            "message part 2 (application/tlsrpt+gzip): the application/tlsrpt+gzip part holds JSON; read as JSON",
        ]
    );
    for (media_type, body) in [
        ("application/json", base64(GOOGLE.as_bytes())),
        ("application/gzip", gz.clone()),
    ] {
        let headers = format!("Content-Type: {media_type}\nContent-Transfer-Encoding: base64");
        let r = read(&mail(REPORT_HEADERS, &[(&headers, &body)]));
        assert_eq!(
            r.report.policies[0].summary.total_successful_session_count,
            12
        );
        assert!(
            matches!(
                r.warnings[0].kind(),
                ReportWarningKind::UnusualMediaType { .. }
            ),
            "{media_type}"
        );
    }

    // The §5.3 headers against the report.
    let headers = REPORT_HEADERS
        .replace(
            "TLS-Report-Domain: example.com",
            "TLS-Report-Domain: example.net",
        )
        .replace(
            "TLS-Report-Submitter: google.com",
            "TLS-Report-Submitter: yahoo.com",
        );
    let m = mail(
        &headers,
        &[("Content-Type: application/tlsrpt+json", GOOGLE.as_bytes())],
    );
    assert_eq!(
        warnings(&read(&m)),
        [
            "message header TLS-Report-Domain: TLS-Report-Domain is \"example.net\" but the report says \"example.com\"",
            "message header TLS-Report-Submitter: TLS-Report-Submitter is \"yahoo.com\" but the report says \"smtp-tls-reporting@google.com\"",
        ]
    );

    // A report forwarded as message/rfc822 is found inside.
    let inner = String::from_utf8(mail(
        REPORT_HEADERS,
        &[("Content-Type: application/tlsrpt+json", GOOGLE.as_bytes())],
    ))
    .unwrap();
    let m = mail(
        "From: me@example.com\nContent-Type: multipart/mixed; boundary=\"b1\"\n",
        &[
            TEXT_PART,
            (
                "Content-Type: message/rfc822",
                inner.replace("b1", "b2").as_bytes(),
            ),
        ],
    );
    assert_eq!(
        read(&m).report.policies[0]
            .summary
            .total_successful_session_count,
        12
    );
}

#[test]
fn t11_null_fields_read_as_missing() {
    let json = br#"{"organization-name":null,"date-range":null,"contact-info":"a@b.example",
        "report-id":"x","policies":[{"policy":{"policy-type":"tlsa","policy-string":null,
        "policy-domain":"example.com","mx-host":null},"summary":{"total-successful-session-count":null,
        "total-failure-session-count":1},"failure-details":[{"result-type":"dnssec-invalid",
        "failed-session-count":1,"receiving-ip":null}]}]}"#;
    assert_eq!(
        warnings(&read(json)),
        [
            "organization-name: missing or empty",
            "date-range.start-datetime: missing or empty",
            "date-range.end-datetime: missing or empty",
        ]
    );
}

// T12: hostile input.

/// A valid gzip file of `gib` GiB of zeros, about 1 MiB per GiB: a 1 MiB deflate run ending in
/// a full flush (so that it refers to nothing before it), repeated, then a final empty block
/// and the true CRC and size.
fn gzip_bomb(gib: usize) -> Vec<u8> {
    use flate2::{Compress, Crc, FlushCompress};
    let zeros = vec![0u8; 1 << 20];
    let mut c = Compress::new(Compression::best(), false);
    let mut chunk = Vec::with_capacity(4096);
    c.compress_vec(&zeros, &mut chunk, FlushCompress::Full)
        .unwrap();
    assert_eq!(c.total_in(), 1 << 20, "the whole MiB went in");
    let mut one = Crc::new();
    one.update(&zeros);
    let mut crc = Crc::new();
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    for _ in 0..gib << 10 {
        out.extend_from_slice(&chunk);
        crc.combine(&one);
    }
    out.extend_from_slice(&[0x03, 0x00]); // BFINAL, fixed Huffman, end of block
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&crc.amount().to_le_bytes());
    out
}

#[test]
// The test times itself (the reader under test never reads the clock).
#[allow(clippy::disallowed_methods)]
fn t12_gzip_bomb_stops_at_the_cap_quickly() {
    let bomb = gzip_bomb(1);
    assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
    // The bomb is real: with the cap out of the way a small part of it inflates as it should.
    let mut head = vec![0u8; 3 << 20];
    let mut d = flate2::read::GzDecoder::new(&bomb[..]);
    std::io::Read::read_exact(&mut d, &mut head).unwrap();
    assert!(head.iter().all(|&b| b == 0));

    let start = Instant::now();
    let err = read_report(&bomb, &ReadLimits::default()).unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(
        err.kind(),
        &ReadErrorKind::TooLargeDecompressed { max: 16 << 20 }
    );
    assert_eq!(
        err.to_string(),
        "the gunzipped report is larger than the limit of 16777216 bytes"
    );
    // 16 MiB inflated, not 1 GiB (about 0.1 s optimised, a few seconds in a debug build).
    assert!(elapsed.as_secs() < 60, "{elapsed:?}");

    let mut limits = ReadLimits::default();
    limits.max_decompressed = 100;
    let err = read_report(&gzip(GOOGLE.as_bytes()), &limits).unwrap_err();
    assert_eq!(
        err.kind(),
        &ReadErrorKind::TooLargeDecompressed { max: 100 }
    );
    limits.max_decompressed = GOOGLE.len();
    assert!(read_report(&gzip(GOOGLE.as_bytes()), &limits).is_ok());
}

#[test]
fn t12_json_nested_100k_deep_is_refused_at_the_depth_limit() {
    let deep = |open: &str, close: &str| {
        format!(
            "{{\"policies\":[{{\"x\":{}{}}}]}}",
            open.repeat(100_000),
            close.repeat(100_000)
        )
    };
    for json in [
        deep("[", "]"),
        deep("{\"a\":", "}").replace("{\"a\":}", "{\"a\":0}"),
    ] {
        let err = read_report(json.as_bytes(), &ReadLimits::default()).unwrap_err();
        assert_eq!(err.kind(), &ReadErrorKind::TooDeep { max: 32 }, "{err}");
        assert_eq!(err.line(), Some(1));
        assert!(err.column().is_some_and(|c| c < 200), "{err}");
    }
    // In a mail, gzipped: the same error, and it says where.
    let m = mail(
        REPORT_HEADERS,
        &[(
            "Content-Type: application/tlsrpt+gzip\nContent-Disposition: attachment; filename=\"r.json.gz\"\nContent-Transfer-Encoding: base64",
            &base64(&gzip(deep("[", "]").as_bytes())),
        )],
    );
    let err = read_report(&m, &ReadLimits::default()).unwrap_err();
    assert_eq!(err.kind(), &ReadErrorKind::TooDeep { max: 32 });
    assert_eq!(
        err.within_part(),
        Some("message part 2 (application/tlsrpt+gzip \"r.json.gz\"), gunzipped")
    );
    assert!(
        err.to_string().starts_with(
            "message part 2 (application/tlsrpt+gzip \"r.json.gz\"), gunzipped: JSON line 1 column "
        ),
        "{err}"
    );
}

#[test]
fn t12_ten_million_entries_are_refused_at_the_array_limits() {
    let huge = |prefix: &str, item: &str, suffix: &str| {
        format!(
            "{prefix}{}{item}{suffix}",
            format!("{item},").repeat(10_000_000 - 1)
        )
    };
    let cases = [
        (
            huge("{\"policies\":[", "{}", "]}"),
            ReadErrorKind::TooManyPolicies { max: 10_000 },
        ),
        (
            huge("{\"policies\":[{\"failure-details\":[", "{}", "]}]}"),
            ReadErrorKind::TooManyFailureDetails { max: 100_000 },
        ),
        (
            huge(
                "{\"policies\":[{\"policy\":{\"policy-string\":[",
                "\"\"",
                "]}}]}",
            ),
            ReadErrorKind::TooManyStrings { max: 100_000 },
        ),
    ];
    for (json, kind) in cases {
        assert!(json.len() < ReadLimits::default().max_input);
        let err = read_report(json.as_bytes(), &ReadLimits::default()).unwrap_err();
        assert_eq!(err.kind(), &kind, "{err}");
        assert_eq!(err.line(), Some(1));
    }
    // The limits count across policies.
    let mut limits = ReadLimits::default();
    limits.max_failure_details = 3;
    let two = r#"{"failure-details":[{},{}]}"#;
    let json = format!("{{\"policies\":[{two},{two}]}}");
    let err = read_report(json.as_bytes(), &limits).unwrap_err();
    assert_eq!(err.kind(), &ReadErrorKind::TooManyFailureDetails { max: 3 });
    limits.max_failure_details = 4;
    assert!(read_report(json.as_bytes(), &limits).is_ok());

    // An array where the model has a struct (serde reads structs from arrays) cannot carry a
    // huge array past the counts.
    let json = huge("{\"policies\":[[{},{},[", "{}", "]]]}");
    let err = read_report(json.as_bytes(), &ReadLimits::default()).unwrap_err();
    assert!(
        matches!(err.kind(), ReadErrorKind::Schema { message } if message == "invalid type: sequence, expected a JSON object"),
        "{err}"
    );
    // A million entries of an unknown field are skipped without being kept.
    let json = format!(
        "{{\"x-vendor\":[{}{{}}],\"report-id\":\"r\"}}",
        "{},".repeat(999_999)
    );
    assert_eq!(read(json.as_bytes()).report.report_id, "r");
}

#[test]
fn t12_wrong_types_are_typed_errors_with_line_and_column() {
    let cases: [(&str, (usize, usize), &str); 7] = [
        (
            "{\n\"policies\":[{\"summary\":{\"total-successful-session-count\":\"12\"}}]}",
            (2, 61),
            "invalid type: string \"12\", expected u64",
        ),
        (
            "{\"policies\":[{\"summary\":{\"total-failure-session-count\":-1}}]}",
            (1, 57),
            "invalid value: integer `-1`, expected u64",
        ),
        (
            "{\"policies\":[{\"summary\":{\"total-failure-session-count\":1.5}}]}",
            (1, 58),
            "invalid type: floating point `1.5`, expected u64",
        ),
        (
            "{\"policies\":{}}",
            (1, 12),
            "invalid type: map, expected a sequence",
        ),
        (
            "{\"organization-name\":42}",
            (1, 23),
            "invalid type: integer `42`, expected a string",
        ),
        (
            "{\"policies\":[{\"policy\":{\"mx-host\":7}}]}",
            (1, 35),
            "invalid type: integer `7`, expected a string or an array of strings",
        ),
        (
            "{\"report-id\":\"a\",\"report-id\":\"b\"}",
            (1, 28),
            "duplicate field `report-id`",
        ),
    ];
    for (json, (line, column), message) in cases {
        let err = read_report(json.as_bytes(), &ReadLimits::default()).unwrap_err();
        assert_eq!(
            err.kind(),
            &ReadErrorKind::Schema {
                message: message.to_owned()
            },
            "{json}: {err}"
        );
        // serde_json's position: the end of the value (where it found it wrong).
        assert_eq!(
            (err.line(), err.column()),
            (Some(line), Some(column)),
            "{json}: {err}"
        );
    }
    let err = read_report(b"{\"report-id\": }", &ReadLimits::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "JSON line 1 column 15: not JSON: expected value"
    );
    let err = read_report(b"{\"report-id\": \"x\"", &ReadLimits::default()).unwrap_err();
    assert!(matches!(err.kind(), ReadErrorKind::Syntax { .. }), "{err}");
    let err = read_report(b"{} {}", &ReadLimits::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "JSON line 1 column 4: not JSON: trailing characters"
    );
}

#[test]
fn t12_non_utf8_is_refused_where_it_is() {
    let json = b"{\"organization-name\":\n\"Soci\xe9t\xe9\"}";
    let err = read_report(json, &ReadLimits::default()).unwrap_err();
    assert_eq!(err.kind(), &ReadErrorKind::NotUtf8);
    assert_eq!((err.line(), err.column()), (Some(2), Some(6)));
    assert_eq!(
        err.to_string(),
        "JSON line 2 column 6: the JSON is not UTF-8"
    );
    let err = read_report(&gzip(json), &ReadLimits::default()).unwrap_err();
    assert_eq!(err.kind(), &ReadErrorKind::NotUtf8);
    assert_eq!(err.within_part(), Some("gunzipped report"));
    // UTF-16 with a byte order mark is neither JSON, gzip nor a mail.
    let err = read_report(b"\xff\xfe{\0}\0", &ReadLimits::default()).unwrap_err();
    assert!(
        matches!(err.kind(), ReadErrorKind::UnknownFormat { .. }),
        "{err}"
    );
}

#[test]
fn t12_mail_without_the_report_part_names_its_parts() {
    let m = mail(
        REPORT_HEADERS,
        &[
            TEXT_PART,
            (
                "Content-Type: image/png\nContent-Disposition: attachment; filename=\"logo.png\"",
                b"x",
            ),
            ("Content-Type: application/octet-stream", b"{}"),
        ],
    );
    let err = read_report(&m, &ReadLimits::default()).unwrap_err();
    assert_eq!(
        err.kind(),
        &ReadErrorKind::NoReportPart {
            parts: vec![
                "multipart/report".to_owned(),
                "text/plain".to_owned(),
                "image/png \"logo.png\"".to_owned(),
                "application/octet-stream".to_owned(),
            ],
            more: 0,
        }
    );
    assert_eq!(
        err.to_string(),
        "the mail has no application/tlsrpt+gzip or application/tlsrpt+json part (parts: \
         multipart/report, text/plain, image/png \"logo.png\", application/octet-stream)"
    );
    // A plain text mail.
    let err = read_report(
        b"From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n",
        &ReadLimits::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.kind(),
        &ReadErrorKind::NoReportPart {
            parts: vec!["text/plain".to_owned()],
            more: 0,
        }
    );
    // A mail of many parts: the first 20 are named, the rest counted.
    let many = vec![TEXT_PART; 30];
    let err = read_report(&mail(REPORT_HEADERS, &many), &ReadLimits::default()).unwrap_err();
    assert!(
        matches!(err.kind(), ReadErrorKind::NoReportPart { parts, more: 11 } if parts.len() == 20),
        "{err}"
    );
    assert!(
        err.to_string().ends_with(", text/plain and 11 more)"),
        "{err}"
    );
}

#[test]
fn t12_truncated_and_corrupt_gzip() {
    let gz = gzip(GOOGLE.as_bytes());
    for cut in [2, 10, gz.len() / 2, gz.len() - 4] {
        let err = read_report(&gz[..cut], &ReadLimits::default()).unwrap_err();
        assert!(
            matches!(err.kind(), ReadErrorKind::Gzip { .. }),
            "{cut}: {err}"
        );
    }
    let err = read_report(&gz[..gz.len() / 2], &ReadLimits::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "gzip: truncated (the data ends before the gzip trailer)"
    );
    let mut corrupt = gz.clone();
    let at = corrupt.len() - 6; // in the CRC
    corrupt[at] ^= 0xff;
    let err = read_report(&corrupt, &ReadLimits::default()).unwrap_err();
    assert!(matches!(err.kind(), ReadErrorKind::Gzip { .. }), "{err}");
    // Truncated inside a mail: the error names the part.
    let m = mail(
        REPORT_HEADERS,
        &[(
            "Content-Type: application/tlsrpt+gzip\nContent-Transfer-Encoding: base64",
            &base64(&gz[..40]),
        )],
    );
    let err = read_report(&m, &ReadLimits::default()).unwrap_err();
    assert!(matches!(err.kind(), ReadErrorKind::Gzip { .. }), "{err}");
    assert_eq!(
        err.within_part(),
        Some("message part 2 (application/tlsrpt+gzip)")
    );
}

#[test]
fn t12_empty_oversized_and_unknown_input() {
    for empty in [&b""[..], b"   \r\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf \n"] {
        let err = read_report(empty, &ReadLimits::default()).unwrap_err();
        assert_eq!(err.kind(), &ReadErrorKind::Empty, "{empty:?}");
        assert_eq!(err.to_string(), "empty input");
    }
    let err = read_report(&gzip(b""), &ReadLimits::default()).unwrap_err();
    assert_eq!(err.kind(), &ReadErrorKind::Empty);
    let mut limits = ReadLimits::default();
    limits.max_input = 100;
    let err = read_report(GOOGLE.as_bytes(), &limits).unwrap_err();
    assert_eq!(
        err.kind(),
        &ReadErrorKind::TooLarge {
            size: GOOGLE.len(),
            max: 100
        }
    );
    for junk in [
        &b"[1,2]"[..],
        b"\x00\x01\x02",
        b"hello world",
        b"PK\x03\x04zip",
    ] {
        let err = read_report(junk, &ReadLimits::default()).unwrap_err();
        assert!(
            matches!(err.kind(), ReadErrorKind::UnknownFormat { .. }),
            "{junk:?}: {err}"
        );
    }
    let err = read_report(b"hello world", &ReadLimits::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "neither a JSON report, gzip nor a mail (it begins with \"hello world\")"
    );
}

#[test]
fn t11_the_reports_this_project_writes_read_back_without_warnings() {
    use mta_sts_core::io::CertificateProblem;
    use mta_sts_core::tlsrpt::{
        Aggregator, AggregatorLimits, Failure, PendingReport, Reporter, Session, SessionPolicy,
        SessionResult, TlsFailure, format_datetime, report_mail,
    };
    use mta_sts_core::{Policy, UnixTime};

    const DAY1: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    let policy = Policy::parse(
        "version: STSv1\nmode: testing\nmx: mx.example.com\nmx: *.backup.example.com\nmax_age: 86400\n",
    )
    .unwrap();
    let policy = SessionPolicy::sts("example.com", &policy);
    let mut a = Aggregator::new(AggregatorLimits::default());
    for t in [DAY1 + 1, DAY1 + 2] {
        let _ = a.record(&Session::new(
            UnixTime::from_secs(t),
            policy.clone(),
            SessionResult::Success,
        ));
    }
    let expired = Failure::from_tls(&TlsFailure::Certificate(CertificateProblem::Expired))
        .with_sending_mta_ip("198.51.100.1".parse().unwrap())
        .with_receiving_mx_hostname("mx.example.com")
        .with_receiving_ip("192.0.2.25".parse().unwrap());
    let _ = a.record(&Session::new(
        UnixTime::from_secs(DAY1 + 3),
        policy,
        SessionResult::Failure(expired),
    ));
    let reporter = Reporter::new("Example Org", "tlsrpt@sender.example", "sender.example");
    let day = a
        .close(UnixTime::from_secs(DAY1 + 86_400), &reporter)
        .remove(0);

    let json = read(&day.json());
    assert_eq!(json.format, ReportFormat::Json);
    assert_eq!(warnings(&json), Vec::<String>::new());
    let p = &json.report.policies[0];
    assert_eq!(p.summary.total_successful_session_count, 2);
    assert_eq!(p.summary.total_failure_session_count, 1);
    assert_eq!(p.failure_details[0].result_type, "certificate-expired");

    let gz = read(&day.gzip());
    assert_eq!((gz.format, gz.warnings.len()), (ReportFormat::Gzip, 0));
    assert_eq!(gz.report, json.report);

    let mail = report_mail(
        &PendingReport::from(&day),
        "tlsrpt@sender.example",
        "tlsrpt@example.com",
        UnixTime::from_secs(DAY1 + 86_400 + 3600),
        "1@sender.example",
    );
    let from_mail = read(&mail.message);
    assert_eq!(from_mail.format, ReportFormat::Mail);
    assert_eq!(warnings(&from_mail), Vec::<String>::new());
    assert_eq!(from_mail.report, json.report);

    // The writer's date-times are the reader's.
    for t in [0, DAY1, DAY1 + 86_399, 253_402_300_799] {
        let t = UnixTime::from_secs(t);
        assert_eq!(parse_datetime(&format_datetime(t)), Some(t));
    }
}
