//! T1: the `_smtp._tls` TXT record (RFC 8460 §3): the RFC examples, real-world records, the
//! cases of peers' parser tests (Stalwart mail-auth, mox), every error kind with its column,
//! discovery, the two profiles, and property tests.

use mta_sts_core::tlsrpt::{
    MAX_RECORD_LEN, MAX_URIS, ReportUri, TlsRptError, TlsRptErrorKind, TlsRptLayout, TlsRptRecord,
    TlsRptWarningKind, UriProblem, record_name,
};
use mta_sts_core::{NameProblem, Profile};
use proptest::prelude::*;

fn ok(record: &str, profile: Profile) -> TlsRptRecord {
    TlsRptRecord::parse_with(record, profile).unwrap_or_else(|e| panic!("{record:?}: {e}"))
}

fn strict(record: &str) -> TlsRptRecord {
    ok(record, Profile::Strict)
}

fn err(record: &str, profile: Profile) -> TlsRptError {
    match TlsRptRecord::parse_with(record, profile) {
        Ok(r) => panic!("{record:?} ({profile:?}) parsed: {r:?}"),
        Err(e) => e,
    }
}

/// The error kind and column under both profiles (the same for both).
fn err_both(record: &str) -> (TlsRptErrorKind, Option<usize>) {
    let d = err(record, Profile::Default);
    let s = err(record, Profile::Strict);
    assert_eq!(d, s, "{record:?}: profiles disagree");
    (d.kind().clone(), d.column())
}

fn mailto(a: &str) -> ReportUri {
    ReportUri::Mailto(a.to_owned())
}

fn https(url: &str, host: &str, port: u16, path: &str) -> ReportUri {
    ReportUri::Https {
        url: url.to_owned(),
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    }
}

fn layout_warnings(r: &TlsRptRecord) -> Vec<(TlsRptLayout, usize)> {
    r.warnings()
        .iter()
        .filter_map(|w| match w.kind() {
            TlsRptWarningKind::Layout(l) => Some((*l, w.column())),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// RFC 8460 examples, real-world records, peers' cases

#[test]
fn t1_rfc8460_3_1_examples() {
    let r = strict("v=TLSRPTv1;rua=mailto:reports@example.com");
    assert_eq!(r.rua(), [mailto("reports@example.com")]);
    assert!(r.warnings().is_empty() && r.extensions().is_empty());
    assert_eq!(r.rua()[0].as_str(), "reports@example.com");
    assert_eq!(r.rua()[0].to_string(), "mailto:reports@example.com");

    let r = strict("v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt");
    assert_eq!(
        r.rua(),
        [https(
            "https://reporting.example.com/v1/tlsrpt",
            "reporting.example.com",
            443,
            "/v1/tlsrpt"
        )]
    );
    assert_eq!(
        r.rua()[0].as_str(),
        "https://reporting.example.com/v1/tlsrpt"
    );
    assert!(r.warnings().is_empty());
    assert_eq!(
        r.to_string(),
        "v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt"
    );
}

#[test]
fn t1_real_world_records() {
    // google.com (as noted in a published checker script), gmail.com, microsoft.com (live, as
    // DomainDetective prints it), the UK NCSC Mail Check record with its trailing ';'.
    for (record, want) in [
        (
            "v=TLSRPTv1;rua=mailto:sts-reports@google.com",
            mailto("sts-reports@google.com"),
        ),
        (
            "v=TLSRPTv1; rua=mailto:smtp-tls-reporting@google.com",
            mailto("smtp-tls-reporting@google.com"),
        ),
        (
            "v=TLSRPTv1;rua=https://tlsrpt.azurewebsites.net/report",
            https(
                "https://tlsrpt.azurewebsites.net/report",
                "tlsrpt.azurewebsites.net",
                443,
                "/report",
            ),
        ),
        (
            "v=TLSRPTv1;rua=mailto:tls-rua@mailcheck.service.ncsc.gov.uk;",
            mailto("tls-rua@mailcheck.service.ncsc.gov.uk"),
        ),
        (
            "v=TLSRPTv1; rua=mailto:sts-reports@example.net;",
            mailto("sts-reports@example.net"),
        ),
    ] {
        let r = strict(record);
        assert_eq!(r.rua(), [want], "{record}");
        assert!(r.warnings().is_empty(), "{record}");
    }
    // Published as two character-strings ("v=TLSRPTv1;" "rua=..."): joined without a space.
    let joined = [
        b"v=TLSRPTv1;".as_slice(),
        b"rua=mailto:tls-rua@mailcheck.service.ncsc.gov.uk;",
    ]
    .concat();
    let r = TlsRptRecord::discover_strict([joined]).unwrap();
    assert_eq!(r.rua(), [mailto("tls-rua@mailcheck.service.ncsc.gov.uk")]);
}

#[test]
fn t1_stalwart_mail_auth_cases() {
    // mail-auth 0.13 src/mta_sts/parse.rs `tlsrpt_parse`.
    assert_eq!(
        strict("v=TLSRPTv1;rua=mailto:reports@example.com").rua(),
        [mailto("reports@example.com")]
    );
    assert_eq!(
        strict("v=TLSRPTv1; rua=mailto:tlsrpt@mydomain.com,https://tlsrpt.mydomain.com/v1").rua(),
        [
            mailto("tlsrpt@mydomain.com"),
            https(
                "https://tlsrpt.mydomain.com/v1",
                "tlsrpt.mydomain.com",
                443,
                "/v1"
            )
        ]
    );
}

#[test]
fn t1_mox_cases() {
    // mox tlsrpt/parse_test.go: the good records.
    let r = strict("v=TLSRPTv1; rua=mailto:tlsrpt@mox.example;");
    assert_eq!(r.rua(), [mailto("tlsrpt@mox.example")]);

    let rec = "v=TLSRPTv1; rua=mailto:tlsrpt@mox.example , \t\t https://mox.example/tlsrpt  ";
    let r = ok(rec, Profile::Default);
    assert_eq!(
        r.rua(),
        [
            mailto("tlsrpt@mox.example"),
            https("https://mox.example/tlsrpt", "mox.example", 443, "/tlsrpt")
        ]
    );
    // The white space around ',' is the ABNF's; the trailing white space is not.
    assert_eq!(
        layout_warnings(&r),
        [(TlsRptLayout::TrailingWhitespace, 74)]
    );
    let e = err(rec, Profile::Strict);
    assert_eq!(
        (e.kind(), e.column()),
        (
            &TlsRptErrorKind::Layout(TlsRptLayout::TrailingWhitespace),
            Some(74)
        )
    );

    let r = strict("v=TLSRPTv1; rua=mailto:tlsrpt@mox.example; ext=yes");
    assert_eq!(r.extensions().len(), 1);
    assert_eq!(
        (r.extensions()[0].name(), r.extensions()[0].value()),
        ("ext", "yes")
    );

    // Two rua fields: mox merges them; so does the default profile, with a warning.
    let rec = "v=TLSRPTv1 ; rua=mailto:x@x.example; rua=mailto:y@x.example";
    let r = ok(rec, Profile::Default);
    assert_eq!(r.rua(), [mailto("x@x.example"), mailto("y@x.example")]);
    assert_eq!(layout_warnings(&r), [(TlsRptLayout::DuplicateRua, 38)]);
    assert_eq!(
        *err(rec, Profile::Strict).kind(),
        TlsRptErrorKind::Layout(TlsRptLayout::DuplicateRua)
    );

    // The bad records, each with its kind and column.
    use TlsRptErrorKind as K;
    let syntax = |expected| K::Syntax { expected };
    for (record, kind, column) in [
        ("v=TLSRPTv0", K::BadVersion, Some(1)),
        ("v=TLSRPTv10", K::BadVersion, Some(1)),
        ("v=TLSRPTv2", K::BadVersion, Some(1)),
        ("v=TLSRPTv1", K::MissingRua, None),
        ("v=TLSRPTv1;", K::MissingRua, None),
        ("v=TLSRPTv1; ext=1", K::MissingRua, None),
        ("v=TLSRPTv1; rua=", K::EmptyRua, Some(13)),
        (
            "v=TLSRPTv1; rua=noscheme",
            K::BadUri(UriProblem::NoScheme),
            Some(17),
        ),
        (
            "v=TLSRPTv1; rua=mailto:x@x.example; more=",
            K::EmptyExtensionValue {
                name: "more".into(),
            },
            Some(37),
        ),
        (
            "v=TLSRPTv1; rua=mailto:x@x.example; a12345678901234567890123456789012=1",
            K::InvalidExtensionName {
                name: "a12345678901234567890123456789012".into(),
            },
            Some(37),
        ),
        (
            "v=TLSRPTv1; rua=mailto:x@x.example; 1%=a",
            syntax("a name=value field"),
            Some(37),
        ),
        (
            "v=TLSRPTv1; rua=mailto:x@x.example; test==",
            K::EmptyExtensionValue {
                name: "test".into(),
            },
            Some(37),
        ),
        (
            "v=TLSRPTv1; rua=mailto:x@x.example other",
            syntax("';'"),
            Some(36),
        ),
        (
            "v=TLSRPTv1; rua=http://bad/%",
            K::BadUri(UriProblem::BadPercentEncoding),
            Some(28),
        ),
    ] {
        assert_eq!(err_both(record), (kind, column), "{record}");
    }
    // "rua=,, ,": empty URIs are a layout deviation; with none left the field is empty.
    let rec = "v=TLSRPTv1; rua=,, ,";
    assert_eq!(*err(rec, Profile::Default).kind(), K::EmptyRua);
    assert_eq!(err(rec, Profile::Default).column(), Some(13));
    let e = err(rec, Profile::Strict);
    assert_eq!(
        (e.kind(), e.column()),
        (&K::Layout(TlsRptLayout::EmptyUri), Some(17))
    );
    // ";;" after the last field: mox refuses it; the default profile forgives it.
    let rec = "v=TLSRPTv1; rua=mailto:x@x.example;;";
    assert_eq!(
        layout_warnings(&ok(rec, Profile::Default)),
        [(TlsRptLayout::EmptyField, 36)]
    );
    assert_eq!(
        *err(rec, Profile::Strict).kind(),
        K::Layout(TlsRptLayout::EmptyField)
    );
}

// ---------------------------------------------------------------------------------------------
// Layout, white space, several URIs

#[test]
fn t1_whitespace_forms_of_the_abnf() {
    for record in [
        "v=TLSRPTv1 ; rua=mailto:a@b.example",
        "v=TLSRPTv1;\trua=mailto:a@b.example\t;",
        "v=TLSRPTv1 \t;  rua=mailto:a@b.example ; ",
        "v=TLSRPTv1;rua=mailto:a@b.example,mailto:c@d.example",
        "v=TLSRPTv1;rua=mailto:a@b.example ,mailto:c@d.example",
        "v=TLSRPTv1;rua=mailto:a@b.example,\tmailto:c@d.example;x=1",
    ] {
        let r = strict(record);
        assert!(r.warnings().is_empty(), "{record}");
        assert_eq!(r.rua()[0], mailto("a@b.example"), "{record}");
    }
}

#[test]
fn t1_several_uris_in_order() {
    let r = strict(
        "v=TLSRPTv1; rua=mailto:a@one.example, https://two.example/r , mailto:b@three.example",
    );
    assert_eq!(
        r.rua(),
        [
            mailto("a@one.example"),
            https("https://two.example/r", "two.example", 443, "/r"),
            mailto("b@three.example"),
        ]
    );
}

#[test]
fn t1_layout_deviations_warned_by_default_refused_by_strict() {
    use TlsRptLayout as L;
    for (record, layout, column) in [
        (
            "v=TLSRPTv1; rua=mailto:a@b.example  ",
            L::TrailingWhitespace,
            35,
        ),
        ("v=TLSRPTv1;; rua=mailto:a@b.example", L::EmptyField, 12),
        ("v=TLSRPTv1; rua=mailto:a@b.example,", L::EmptyUri, 36),
        ("v=TLSRPTv1; rua=,mailto:a@b.example", L::EmptyUri, 17),
        (
            "v=TLSRPTv1; rua=mailto:a@b.example,,mailto:c@b.example",
            L::EmptyUri,
            36,
        ),
        (
            "v=TLSRPTv1; rua= mailto:a@b.example",
            L::SpaceAfterEquals,
            17,
        ),
        ("v=TLSRPTv1; RUA=mailto:a@b.example", L::RuaCase, 13),
        ("v=TLSRPTv1; Rua=mailto:a@b.example", L::RuaCase, 13),
        ("v=TLSRPTv1; rua=mailto:a@b.example!10m", L::SizeLimit, 35),
        ("v=TLSRPTv1; rua=https://r.example/x!5", L::SizeLimit, 36),
        ("v=TLSRPTv1; rua=mailto:ü@b.example", L::NonAsciiUri, 17),
    ] {
        let r = ok(record, Profile::Default);
        assert_eq!(layout_warnings(&r), [(layout, column)], "{record}");
        assert!(!r.rua().is_empty());
        let e = err(record, Profile::Strict);
        let want_col = if layout == L::NonAsciiUri { 24 } else { column };
        let want_kind = if layout == L::NonAsciiUri {
            TlsRptErrorKind::NonAscii
        } else {
            TlsRptErrorKind::Layout(layout)
        };
        assert_eq!(
            (e.kind(), e.column()),
            (&want_kind, Some(want_col)),
            "{record}"
        );
        assert!(
            e.to_string().starts_with(&format!("column {want_col}: ")),
            "{e}"
        );
    }
    // The size limit is cut off; the address is what comes before it.
    let r = ok("v=TLSRPTv1; rua=mailto:a@b.example!10m", Profile::Default);
    assert_eq!(r.rua(), [mailto("a@b.example")]);
    // The warnings say what was forgiven, with the column.
    assert_eq!(
        r.warnings()[0].to_string(),
        "column 35: a DMARC-style size limit ('!') after a URI (ignored)"
    );
}

// ---------------------------------------------------------------------------------------------
// URI schemes and URI checks

#[test]
fn t1_unknown_schemes_skipped_by_default_refused_by_strict() {
    let rec = "v=TLSRPTv1; rua=http://r.example/report,mailto:a@b.example";
    let r = ok(rec, Profile::Default);
    assert_eq!(r.rua(), [mailto("a@b.example")]);
    assert_eq!(r.warnings().len(), 1);
    assert_eq!(r.warnings()[0].column(), 17);
    assert_eq!(
        *r.warnings()[0].kind(),
        TlsRptWarningKind::UnsupportedScheme {
            uri: "http://r.example/report".into()
        }
    );
    let e = err(rec, Profile::Strict);
    assert_eq!(
        (e.kind(), e.column()),
        (&TlsRptErrorKind::UnsupportedScheme("http".into()), Some(17))
    );
    // With no usable URI left, the default profile refuses too, naming the first scheme.
    let (kind, column) = err_both("v=TLSRPTv1; rua=ftp://r.example/x, XMPP:r@example.org");
    assert_eq!(
        (kind, column),
        (TlsRptErrorKind::UnsupportedScheme("ftp".into()), Some(17))
    );
    // Schemes are case-insensitive (RFC 3986 §3.1).
    assert_eq!(
        strict("v=TLSRPTv1; rua=MAILTO:a@b.example,HTTPS://R.Example/x").rua(),
        [
            mailto("a@b.example"),
            https("https://r.example/x", "r.example", 443, "/x")
        ]
    );
}

#[test]
fn t1_bad_uris_refused_with_their_column() {
    use UriProblem as P;
    let cases: &[(&str, P, usize)] = &[
        ("rua=mailto:", P::MissingAddress, 17),
        ("rua=mailto:?subject=x", P::MissingAddress, 17),
        ("rua=mailto:reports.example.com", P::MissingAt, 17),
        (
            "rua=mailto:a@b.example%2Cc@d.example",
            P::MultipleAddresses,
            17,
        ),
        ("rua=mailto:.a@b.example", P::BadLocalPart, 17),
        ("rua=mailto:a..b@b.example", P::BadLocalPart, 17),
        ("rua=mailto:@b.example", P::BadLocalPart, 17),
        ("rua=mailto:a@", P::BadHost(NameProblem::Empty), 17),
        ("rua=mailto:a@[192.0.2.1]", P::IpLiteral, 17),
        (
            "rua=mailto:a@b_c.example",
            P::BadHost(NameProblem::BadCharacter('_')),
            17,
        ),
        ("rua=mailto:a%ZZ@b.example", P::BadPercentEncoding, 25),
        ("rua=mailto:a%FF@b.example", P::BadPercentEncoding, 17),
        ("rua=mailto:a!b@c.example", P::BadCharacter('!'), 25),
        ("rua=mailto:a<b>@c.example", P::BadCharacter('<'), 25),
        ("rua=https:reporting.example.com/x", P::MissingHost, 17),
        ("rua=https:///path", P::MissingHost, 17),
        ("rua=https://user:pw@r.example/", P::Userinfo, 17),
        ("rua=https://192.0.2.1/report", P::IpLiteral, 17),
        ("rua=https://[2001:db8::1]/report", P::IpLiteral, 17),
        ("rua=https://r.example:0/", P::BadPort, 17),
        ("rua=https://r.example:65536/", P::BadPort, 17),
        ("rua=https://r.example:+443/", P::BadPort, 17),
        (
            "rua=https://bad_host.example/",
            P::BadHost(NameProblem::BadCharacter('_')),
            17,
        ),
        (
            "rua=https://r..example/",
            P::BadHost(NameProblem::EmptyLabel),
            17,
        ),
        ("rua=1https://r.example/", P::NoScheme, 17),
        ("rua=:x", P::NoScheme, 17),
    ];
    for (tail, problem, column) in cases {
        let record = format!("v=TLSRPTv1; {tail}");
        assert_eq!(
            err_both(&record),
            (TlsRptErrorKind::BadUri(problem.clone()), Some(*column)),
            "{record}"
        );
    }
    // Display names the column and the problem.
    let e = err("v=TLSRPTv1; rua=https://192.0.2.1/", Profile::Default);
    assert_eq!(
        e.to_string(),
        "column 17: unusable rua URI: an IP address is not allowed as the host"
    );
}

#[test]
fn t1_mailto_address_decoded_and_normalised() {
    let r = strict("v=TLSRPTv1; rua=mailto:tls%2Brpt@Reports.EXAMPLE.com");
    assert_eq!(r.rua(), [mailto("tls+rpt@reports.example.com")]);
    // The address domain in A-labels, written encoded or raw (raw: a warning by default).
    let r = strict("v=TLSRPTv1; rua=mailto:a@b%C3%BCcher.example");
    assert_eq!(r.rua(), [mailto("a@xn--bcher-kva.example")]);
    let r = ok("v=TLSRPTv1; rua=mailto:a@bücher.example", Profile::Default);
    assert_eq!(r.rua(), [mailto("a@xn--bcher-kva.example")]);
    // Header fields are dropped with a warning under both profiles.
    for profile in [Profile::Default, Profile::Strict] {
        let r = ok("v=TLSRPTv1; rua=mailto:a@b.example?subject=TLSRPT", profile);
        assert_eq!(r.rua(), [mailto("a@b.example")]);
        assert_eq!(r.warnings().len(), 1);
        assert_eq!(r.warnings()[0].column(), 35);
        assert_eq!(
            *r.warnings()[0].kind(),
            TlsRptWarningKind::HfieldsDropped {
                ignored: "subject=TLSRPT".into()
            }
        );
    }
    // A quoted local part, encoded.
    let r = strict("v=TLSRPTv1; rua=mailto:%22a%20b%22@b.example");
    assert_eq!(r.rua(), [mailto("\"a b\"@b.example")]);
    assert_eq!(
        r.rua()[0].to_string(),
        "mailto:%22a%20b%22@b.example",
        "Display re-encodes"
    );
    assert_eq!(
        TlsRptRecord::parse_strict(&r.to_string()).unwrap().rua(),
        r.rua()
    );
}

#[test]
fn t1_https_host_port_path() {
    let cases = [
        (
            "https://R.Example.COM:8443/v1/tlsrpt?k=1",
            https(
                "https://r.example.com:8443/v1/tlsrpt?k=1",
                "r.example.com",
                8443,
                "/v1/tlsrpt?k=1",
            ),
        ),
        (
            "https://r.example",
            https("https://r.example", "r.example", 443, "/"),
        ),
        (
            "https://r.example:/x",
            https("https://r.example/x", "r.example", 443, "/x"),
        ),
        (
            "https://r.example?x=%2C",
            https("https://r.example?x=%2C", "r.example", 443, "/?x=%2C"),
        ),
        (
            "https://b%C3%BCcher.example/r",
            https(
                "https://xn--bcher-kva.example/r",
                "xn--bcher-kva.example",
                443,
                "/r",
            ),
        ),
        (
            "https://r.example./r",
            https("https://r.example/r", "r.example", 443, "/r"),
        ),
    ];
    for (uri, want) in cases {
        let record = format!("v=TLSRPTv1; rua={uri}");
        assert_eq!(strict(&record).rua(), [want], "{record}");
    }
    // A U-label host, raw: converted, with a warning by default; a raw path encoded.
    let r = ok("v=TLSRPTv1; rua=https://bücher.example/ü", Profile::Default);
    assert_eq!(
        r.rua(),
        [https(
            "https://xn--bcher-kva.example/%C3%BC",
            "xn--bcher-kva.example",
            443,
            "/%C3%BC"
        )]
    );
    // A fragment is dropped with a warning.
    let r = strict("v=TLSRPTv1; rua=https://r.example/x#frag");
    assert_eq!(
        r.rua(),
        [https("https://r.example/x", "r.example", 443, "/x")]
    );
    assert_eq!(
        *r.warnings()[0].kind(),
        TlsRptWarningKind::FragmentDropped {
            ignored: "frag".into()
        }
    );
    assert_eq!(r.warnings()[0].column(), 36);
}

// ---------------------------------------------------------------------------------------------
// Fields, limits, non-ASCII

#[test]
fn t1_extensions_kept_v_repeated_refused() {
    let r = strict("v=TLSRPTv1; a_b-c.d=x:/?; rua=mailto:a@b.example; Z9=%2C");
    let ext: Vec<_> = r
        .extensions()
        .iter()
        .map(|e| (e.name(), e.value()))
        .collect();
    assert_eq!(ext, [("a_b-c.d", "x:/?"), ("Z9", "%2C")]);
    assert_eq!(
        r.to_string(),
        "v=TLSRPTv1; rua=mailto:a@b.example; a_b-c.d=x:/?; Z9=%2C"
    );
    assert_eq!(
        err_both("v=TLSRPTv1; rua=mailto:a@b.example; v=TLSRPTv1"),
        (TlsRptErrorKind::DuplicateVersion, Some(37))
    );
    assert_eq!(
        err_both("v=TLSRPTv1; _x=1; rua=mailto:a@b.example"),
        (
            TlsRptErrorKind::InvalidExtensionName { name: "_x".into() },
            Some(13)
        )
    );
    assert_eq!(
        err_both("v=TLSRPTv1; -x=1; rua=mailto:a@b.example"),
        (
            TlsRptErrorKind::InvalidExtensionName { name: "-x".into() },
            Some(13)
        )
    );
}

#[test]
fn t1_version_must_come_first_exactly() {
    for record in [
        "rua=mailto:a@b.example; v=TLSRPTv1",
        " v=TLSRPTv1; rua=mailto:a@b.example",
        "V=TLSRPTv1; rua=mailto:a@b.example",
        "v=tlsrptv1; rua=mailto:a@b.example",
        "v = TLSRPTv1; rua=mailto:a@b.example",
        "v=TLSRPTv1x; rua=mailto:a@b.example",
        "v=spf1 -all",
        "",
    ] {
        assert_eq!(
            err_both(record),
            (TlsRptErrorKind::BadVersion, Some(1)),
            "{record}"
        );
    }
}

#[test]
fn t1_non_ascii_and_non_utf8_refused_with_column() {
    assert_eq!(
        err_both("v=TLSRPTv1; é=1; rua=mailto:a@b.example"),
        (TlsRptErrorKind::NonAscii, Some(13))
    );
    assert_eq!(
        err_both("v=TLSRPTv1; x=é; rua=mailto:a@b.example"),
        (TlsRptErrorKind::NonAscii, Some(15))
    );
    // Columns count characters, not bytes, after a non-ASCII one too.
    let r = ok(
        "v=TLSRPTv1; rua=mailto:ü@b.example?x=1;; e=1",
        Profile::Default,
    );
    let cols: Vec<usize> = r.warnings().iter().map(|w| w.column()).collect();
    assert_eq!(cols, [17, 35, 40]);
    let e = err("v=TLSRPTv1; rua=mailto:ü@b.example; e=ü", Profile::Default);
    assert_eq!(
        (e.kind(), e.column()),
        (&TlsRptErrorKind::NonAscii, Some(39))
    );
    let e = TlsRptRecord::parse_bytes(b"v=TLSRPTv1; rua=mailto:a\xff@b.example", Profile::Default)
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.column()),
        (&TlsRptErrorKind::NonAscii, Some(25))
    );
}

#[test]
fn t1_limits_on_length_and_uris() {
    let uris = |n: usize| {
        (0..n)
            .map(|i| format!("mailto:r{i}@example.com"))
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(
        strict(&format!("v=TLSRPTv1; rua={}", uris(MAX_URIS)))
            .rua()
            .len(),
        MAX_URIS
    );
    let record = format!("v=TLSRPTv1; rua={}", uris(MAX_URIS + 1));
    let column = record.rfind(",mailto:").unwrap() + 2;
    assert_eq!(
        err_both(&record),
        (TlsRptErrorKind::TooManyUris { max: MAX_URIS }, Some(column))
    );
    // Counted across rua fields, skipped schemes included.
    let record = format!("v=TLSRPTv1; rua={}; rua=ftp://x.example/", uris(MAX_URIS));
    assert!(matches!(
        err(&record, Profile::Default).kind(),
        TlsRptErrorKind::TooManyUris { .. }
    ));

    let pad = "x".repeat(MAX_RECORD_LEN);
    let record = format!("v=TLSRPTv1; rua=mailto:a@b.example; e={pad}");
    assert_eq!(
        err_both(&record[..MAX_RECORD_LEN + 1]),
        (
            TlsRptErrorKind::TooLong {
                max: MAX_RECORD_LEN
            },
            None
        )
    );
    assert!(TlsRptRecord::parse_strict(&record[..MAX_RECORD_LEN]).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Discovery

#[test]
fn t1_discovery_exactly_one_record_after_filtering() {
    let good = "v=TLSRPTv1; rua=mailto:tlsrpt@example.com";
    // None.
    for answer in [
        vec![],
        vec!["v=spf1 -all"],
        vec!["other", "v=TLSRPTv10; rua=mailto:a@b.example"],
        // RFC 8460 §3: records not beginning with "v=TLSRPTv1;" are discarded.
        vec!["v=TLSRPTv1"],
        vec!["v=TLSRPTv1 rua=mailto:a@b.example"],
    ] {
        let e = TlsRptRecord::discover(&answer).unwrap_err();
        assert_eq!(
            (e.kind(), e.column()),
            (&TlsRptErrorKind::NoRecord, None),
            "{answer:?}"
        );
        assert_eq!(e.to_string(), "no TXT record begins with \"v=TLSRPTv1;\"");
    }
    // One among SPF and other TXT records.
    for answer in [
        vec![good],
        vec![
            "v=spf1 include:_spf.google.com ~all",
            good,
            "google-site-verification=abc",
        ],
        vec!["v=TLSRPTv1", good],
        vec![good, "other"],
    ] {
        let r = TlsRptRecord::discover(&answer).unwrap();
        assert_eq!(r.rua(), [mailto("tlsrpt@example.com")], "{answer:?}");
        assert_eq!(TlsRptRecord::discover_strict(&answer).unwrap(), r);
    }
    // Two (even identical) → none is used.
    let e = TlsRptRecord::discover([good, "v=spf1 -all", good]).unwrap_err();
    assert_eq!(e.kind(), &TlsRptErrorKind::MultipleRecords(2));
    assert_eq!(
        e.to_string(),
        "2 TXT records begin with \"v=TLSRPTv1;\"; exactly one is allowed"
    );
    let e = TlsRptRecord::discover([good, "v=TLSRPTv1 ;rua=https://r.example/", good]).unwrap_err();
    assert_eq!(e.kind(), &TlsRptErrorKind::MultipleRecords(3));
    // The one candidate is invalid: its error, with the column.
    let e = TlsRptRecord::discover(["v=TLSRPTv1; bad"]).unwrap_err();
    assert_eq!(
        (e.kind(), e.column()),
        (
            &TlsRptErrorKind::Syntax {
                expected: "a name=value field"
            },
            Some(13)
        )
    );
    // The profile applies to the chosen record.
    let loose = "v=TLSRPTv1; rua=mailto:a@b.example;;";
    assert!(TlsRptRecord::discover([loose]).is_ok());
    assert_eq!(
        TlsRptRecord::discover_strict([loose]).unwrap_err().kind(),
        &TlsRptErrorKind::Layout(TlsRptLayout::EmptyField)
    );
    assert!(TlsRptRecord::discover_with([loose.as_bytes()], Profile::Default).is_ok());
    // Non-UTF-8 records among the answer do not disturb the choice.
    let answer: [&[u8]; 2] = [b"\xff\xfe", good.as_bytes()];
    assert!(TlsRptRecord::discover(answer).is_ok());
}

#[test]
fn t1_record_name() {
    assert_eq!(record_name("example.com"), "_smtp._tls.example.com");
    assert_eq!(record_name("example.com."), "_smtp._tls.example.com");
    assert_eq!(
        record_name("xn--bcher-kva.example"),
        "_smtp._tls.xn--bcher-kva.example"
    );
}

#[test]
fn t1_canonical_text_parses_back_strictly() {
    for record in [
        "v=TLSRPTv1;rua=mailto:reports@example.com",
        "v=TLSRPTv1;RUA=mailto:%22q%2C%3B%21%22@B.example?subject=x;;",
        "v=TLSRPTv1; rua=https://R.example:444/a?b=c#d, ftp://x/, mailto:a@b.example!1k ; e=1",
        "v=TLSRPTv1; rua=https://bücher.example/ü",
    ] {
        let r = ok(record, Profile::Default);
        let again = TlsRptRecord::parse_strict(&r.to_string())
            .unwrap_or_else(|e| panic!("{record} → {r}: {e}"));
        assert_eq!(again.rua(), r.rua(), "{record}");
        assert_eq!(again.extensions(), r.extensions(), "{record}");
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

fn uri() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.+_-]{1,12}@[a-z][a-z0-9-]{0,10}\\.(example|com|org)"
            .prop_map(|a| format!("mailto:{a}")),
        "[a-z][a-z0-9-]{0,10}\\.example(:[1-9][0-9]{0,3})?(/[a-zA-Z0-9._~-]{0,10}){0,3}"
            .prop_map(|h| format!("https://{h}")),
        "(ftp|http|xmpp):[a-z]{1,8}".prop_map(|u| u),
    ]
}

fn delim() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(";"), Just("; "), Just(" ;"), Just("\t;\t"), Just(";;")]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Generated records: strict success implies default success with the same URIs, and the
    /// canonical text parses back to the same URIs and extensions.
    #[test]
    fn t1_prop_generated_records(
        uris in prop::collection::vec(uri(), 1..6),
        comma in prop_oneof![Just(","), Just(" , "), Just(",\t")],
        d1 in delim(),
        ext in prop::option::of(("[a-z][a-z0-9]{0,5}", "[!-:<>-~]{1,8}")),
        d2 in delim(),
    ) {
        let mut record = format!("v=TLSRPTv1{d1}rua={}", uris.join(comma));
        if let Some((n, v)) = &ext {
            record.push_str(&format!("{d2}{n}={v}"));
        }
        let default = TlsRptRecord::parse(&record);
        if let Ok(s) = TlsRptRecord::parse_strict(&record) {
            let d = default.clone().expect("strict Ok implies default Ok");
            prop_assert_eq!(s.rua(), d.rua());
            prop_assert!(uris.iter().all(|u| u.starts_with("mailto:") || u.starts_with("https:")));
        }
        if let Ok(d) = default {
            prop_assert!(!d.rua().is_empty());
            let again = TlsRptRecord::parse_strict(&d.to_string());
            let again = again.map_err(|e| TestCaseError::fail(format!("{d} → {e}")))?;
            prop_assert_eq!(again.rua(), d.rua());
            prop_assert_eq!(again.extensions(), d.extensions());
        }
    }

    /// Arbitrary text near the grammar never panics, and the profiles agree where strict
    /// succeeds.
    #[test]
    fn t1_prop_arbitrary_text(tail in "[ \t;,=:/@%!?#a-zA-Z0-9.éü\\[\\]-]{0,80}") {
        let record = format!("v=TLSRPTv1;{tail}");
        let default = TlsRptRecord::parse(&record);
        match TlsRptRecord::parse_strict(&record) {
            Ok(s) => {
                let d = default.expect("strict Ok implies default Ok");
                prop_assert_eq!(d.rua(), s.rua());
            }
            Err(e) => prop_assert!(e.column().is_none_or(|c| c <= record.chars().count() + 1)),
        }
        if let Ok(d) = TlsRptRecord::parse(&record) {
            prop_assert!(!d.rua().is_empty() && d.rua().len() <= MAX_URIS);
        }
    }
}
