//! One test per parser / matcher requirement of REQUIREMENTS.md (R5-R9, R22-R28,
//! R30-R33), named after it, plus every example of the RFC 8461 text.

use mta_sts_core::{
    Field, Layout, Mode, MxPattern, NameProblem, Policy, PolicyBuildError, PolicyErrorKind,
    PolicyWarningKind, Profile, StsRecord, TxtErrorKind, TxtLayout, TxtWarningKind,
};

fn policy(body: &str) -> Policy {
    Policy::parse(body).unwrap_or_else(|e| panic!("{body:?}: {e}"))
}

fn error_kind(body: &str) -> PolicyErrorKind {
    Policy::parse(body).expect_err(body).kind().clone()
}

// ---------------------------------------------------------------------------------------------
// RFC 8461 examples

#[test]
fn rfc_3_1_example_txt_record() {
    let r = StsRecord::parse("v=STSv1; id=20160831085700Z;").unwrap();
    assert_eq!(r.id(), "20160831085700Z");
    assert!(r.warnings().is_empty());
    assert_eq!(r.to_string(), "v=STSv1; id=20160831085700Z;");
}

#[test]
fn rfc_3_2_example_policy() {
    let p = policy(
        "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmx: backupmx.example.com\nmax_age: 604800\n",
    );
    assert_eq!(p.mode(), Mode::Enforce);
    assert_eq!(p.max_age(), 604800);
    let mx: Vec<_> = p.mx().iter().map(ToString::to_string).collect();
    assert_eq!(
        mx,
        ["mail.example.com", "*.example.net", "backupmx.example.com"]
    );
    assert!(p.warnings().is_empty());
    assert!(Policy::parse_strict(&p.to_string()).is_ok());
}

#[test]
fn rfc_3_2_example_mx_lines_crlf() {
    // "mx: mail.example.com <CRLF> mx: *.example.net"
    let p = policy(
        "version: STSv1\r\nmode: testing\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 1\r\n",
    );
    assert!(p.matches_mx("mail.example.com"));
    assert!(p.matches_mx("any.example.net"));
}

#[test]
fn rfc_4_1_example_wildcard() {
    let p = MxPattern::parse("*.example.com").unwrap();
    assert!(p.matches("mail.example.com"));
    assert!(!p.matches("example.com"));
    assert!(!p.matches("foo.bar.example.com"));
}

#[test]
fn rfc_8_2_delegation_record_parses() {
    // _mta-sts.user.example CNAME _mta-sts.provider.example: the provider's record is used as is.
    let r = StsRecord::discover([b"v=STSv1; id=20171114T070707;".as_slice()]).unwrap();
    assert_eq!(r.id(), "20171114T070707");
}

// ---------------------------------------------------------------------------------------------
// A. Discovery: the TXT record

#[test]
fn r5_multi_string_txt_joined_without_spaces() {
    let strings: [&[u8]; 2] = [b"v=STSv1; id=ab", b"c1;"];
    let joined: Vec<u8> = strings.concat();
    assert_eq!(StsRecord::discover([joined]).unwrap().id(), "abc1");
}

#[test]
fn r6_records_not_beginning_with_version_are_discarded() {
    let r = StsRecord::discover(["v=spf1 -all", "v=STSv1; id=1"]).unwrap();
    assert_eq!(r.id(), "1");
    for discarded in [
        "V=STSv1; id=1",
        "v=STSv10; id=1",
        "v=STSv1 id=1",
        "v=STSv1",
        "id=1; v=STSv1",
    ] {
        let e = StsRecord::discover([discarded]).unwrap_err();
        assert_eq!(e.kind(), &TxtErrorKind::NoRecord, "{discarded}");
    }
    // Erratum 6285: white space before the ';' keeps the record a candidate.
    assert_eq!(StsRecord::discover(["v=STSv1 \t;id=7"]).unwrap().id(), "7");
}

#[test]
fn r7_not_exactly_one_valid_record_is_no_policy() {
    let two = StsRecord::discover(["v=STSv1; id=1", "v=STSv1; id=2"]).unwrap_err();
    assert_eq!(two.kind(), &TxtErrorKind::MultipleRecords { count: 2 });
    let none = StsRecord::discover(Vec::<Vec<u8>>::new()).unwrap_err();
    assert_eq!(none.kind(), &TxtErrorKind::NoRecord);
    let empty_id = StsRecord::discover(["v=STSv1; id="]).unwrap_err();
    assert!(
        matches!(empty_id.kind(), TxtErrorKind::InvalidId { .. }),
        "{empty_id}"
    );
    let long = format!("v=STSv1; id={}", "a".repeat(33));
    assert!(matches!(
        StsRecord::discover([&long]).unwrap_err().kind(),
        TxtErrorKind::InvalidId { .. }
    ));
    let hyphen = StsRecord::discover(["v=STSv1; id=a-b"]).unwrap_err();
    assert!(matches!(hyphen.kind(), TxtErrorKind::InvalidId { .. }));
    assert_eq!(
        hyphen.to_string(),
        r#"column 10: id must be 1 to 32 letters and digits; found "a-b""#
    );
    for no_candidate in ["v=STSv1", "id=1; v=STSv1", "V=STSv1; id=1"] {
        assert_eq!(
            StsRecord::discover([no_candidate]).unwrap_err().kind(),
            &TxtErrorKind::NoRecord
        );
    }
    // A malformed candidate is counted: with a valid one beside it there is still no policy.
    let e = StsRecord::discover(["v=STSv1; id=a-b", "v=STSv1; id=1"]).unwrap_err();
    assert_eq!(e.kind(), &TxtErrorKind::MultipleRecords { count: 2 });
    // A record without id.
    assert_eq!(
        StsRecord::parse("v=STSv1; x=y").unwrap_err().kind(),
        &TxtErrorKind::MissingId
    );
    // Non-ASCII anywhere.
    assert_eq!(
        StsRecord::parse("v=STSv1; id=1; n=é").unwrap_err().kind(),
        &TxtErrorKind::NonAscii
    );
    assert_eq!(
        StsRecord::parse_bytes(b"v=STSv1; id=1; n=\xff", Profile::Default)
            .unwrap_err()
            .kind(),
        &TxtErrorKind::NonAscii
    );
}

#[test]
fn r8_unknown_fields_ignored_order_free_first_id_wins() {
    let r = StsRecord::parse("v=STSv1; x=y; id=A; id=B;").unwrap();
    assert_eq!(r.id(), "A");
    assert_eq!(r.extensions().len(), 1);
    assert_eq!(
        (r.extensions()[0].name(), r.extensions()[0].value()),
        ("x", "y")
    );
    assert!(
        matches!(r.warnings()[0].kind(), TxtWarningKind::DuplicateId { ignored } if ignored == "B")
    );
    // Also under the strict profile: a repeated id is a warning, not an error.
    assert_eq!(
        StsRecord::parse_strict("v=STSv1; x=y; id=A; id=B;")
            .unwrap()
            .id(),
        "A"
    );
}

#[test]
fn r9_ids_compare_for_equality_only() {
    let cached = StsRecord::parse("v=STSv1; id=2024").unwrap();
    let seen = StsRecord::parse("v=STSv1; id=2023").unwrap();
    // An "older looking" id is simply a different id; ids are case-sensitive strings.
    assert_ne!(cached.id(), seen.id());
    assert_ne!(
        StsRecord::parse("v=STSv1; id=abc").unwrap().id(),
        StsRecord::parse("v=STSv1; id=ABC").unwrap().id()
    );
    assert_eq!(
        StsRecord::parse("v=STSv1;id=abc").unwrap().id(),
        StsRecord::parse("v=STSv1; id=abc;").unwrap().id()
    );
}

#[test]
fn txt_layout_deviations_by_profile() {
    let r = StsRecord::parse("v=STSv1; id=policy1 ").unwrap();
    assert!(matches!(
        r.warnings()[0].kind(),
        TxtWarningKind::Layout(TxtLayout::TrailingWhitespace)
    ));
    let e = StsRecord::parse_strict("v=STSv1; id=policy1 ").unwrap_err();
    assert_eq!(
        e.kind(),
        &TxtErrorKind::Layout(TxtLayout::TrailingWhitespace)
    );
    let e = StsRecord::parse_strict("v=STSv1; ; id=1;").unwrap_err();
    assert_eq!(e.kind(), &TxtErrorKind::Layout(TxtLayout::EmptyField));
    assert_eq!(e.column(), Some(10));
    assert_eq!(
        StsRecord::parse("v=STSv1; id=1;;;")
            .unwrap()
            .warnings()
            .len(),
        2
    );
}

#[test]
fn txt_syntax_errors_say_where() {
    let e = StsRecord::parse("v=STSv1; bogus").unwrap_err();
    assert_eq!(e.to_string(), "column 10: expected a name=value field");
    let e = StsRecord::parse("v=STSv1; id=1 x=2").unwrap_err();
    assert_eq!(e.to_string(), "column 15: expected ';'");
    let e = StsRecord::parse("v=STSv1; id=1; more=").unwrap_err();
    assert_eq!(
        e.kind(),
        &TxtErrorKind::EmptyExtensionValue {
            name: "more".into()
        }
    );
    let e = StsRecord::parse("v=STSv1; id=1; _x=1").unwrap_err();
    assert!(matches!(
        e.kind(),
        TxtErrorKind::InvalidExtensionName { .. }
    ));
    assert_eq!(
        StsRecord::parse("spf").unwrap_err().kind(),
        &TxtErrorKind::NotStsRecord
    );
}

// ---------------------------------------------------------------------------------------------
// C. Parsing the policy

#[test]
fn r22_unknown_keys_ignored_first_duplicate_wins_all_mx_collected() {
    let p = policy(
        "version: STSv1\nmode: enforce\nmode: none\nfoo: bar baz\nmx: a.example\nmx: b.example\nmax_age: 5\n",
    );
    assert_eq!(p.mode(), Mode::Enforce);
    assert_eq!(p.mx().len(), 2);
    assert_eq!(
        (p.extensions()[0].name(), p.extensions()[0].value()),
        ("foo", "bar baz")
    );
    let dup = p
        .warnings()
        .iter()
        .find(|w| matches!(w.kind(), PolicyWarningKind::DuplicateField { .. }))
        .unwrap();
    assert_eq!(dup.line(), 3);
    assert_eq!(
        dup.kind(),
        &PolicyWarningKind::DuplicateField {
            field: Field::Mode,
            first_line: 2
        }
    );
    // A malformed later duplicate is ignored too, in both profiles.
    let body = "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 60\nmax_age: soon\n";
    assert_eq!(Policy::parse_strict(body).unwrap().max_age(), 60);
}

#[test]
fn r23_version_required_and_exact() {
    assert_eq!(
        error_kind("mode: enforce\nmx: a.example\nmax_age: 1"),
        PolicyErrorKind::MissingField(Field::Version)
    );
    let e = Policy::parse("version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"line 1: version must be STSv1; found "STSv2""#
    );
    assert!(Policy::parse("version: stsv1\nmode: none\nmax_age: 1").is_err());
}

#[test]
fn r24_mode_is_one_of_three_case_sensitive() {
    for (text, mode) in [
        ("enforce", Mode::Enforce),
        ("testing", Mode::Testing),
        ("none", Mode::None),
    ] {
        assert_eq!(
            policy(&format!(
                "version: STSv1\nmode: {text}\nmx: a.example\nmax_age: 1"
            ))
            .mode(),
            mode
        );
        assert_eq!(mode.to_string(), text);
        assert_eq!(text.parse::<Mode>().unwrap(), mode);
    }
    let e = Policy::parse("version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1").unwrap_err();
    assert_eq!(e.line(), Some(2));
    assert_eq!(
        e.to_string(),
        r#"line 2: mode must be one of enforce, testing, none; found "Enforce""#
    );
    assert!(matches!(
        error_kind("version: STSv1\nmode: report\nmx: a.example\nmax_age: 1"),
        PolicyErrorKind::InvalidMode { .. }
    ));
}

#[test]
fn r25_max_age_digits_and_clamp() {
    let with = |v: &str| Policy::parse(&format!("version: STSv1\nmode: none\nmax_age: {v}\n"));
    assert_eq!(with("0").unwrap().max_age(), 0);
    assert_eq!(with("31557600").unwrap().max_age(), 31557600);
    for bad in [
        "-1",
        "1e5",
        "86400s",
        "01234567890",
        "",
        "８６４００",
        "+5",
        "5 5",
    ] {
        assert!(
            matches!(
                with(bad).unwrap_err().kind(),
                PolicyErrorKind::InvalidMaxAge { .. }
            ),
            "{bad}"
        );
    }
    let clamped = with("40000000").unwrap();
    assert_eq!(clamped.max_age(), 31557600);
    assert_eq!(
        clamped.warnings()[0].kind(),
        &PolicyWarningKind::MaxAgeClamped { value: 40000000 }
    );
    // The clamp is a warning in the strict profile too.
    assert_eq!(
        Policy::parse_strict("version: STSv1\nmode: none\nmax_age: 9999999999\n")
            .unwrap()
            .max_age(),
        31557600
    );
}

#[test]
fn r26_mx_required_unless_mode_none() {
    assert_eq!(
        error_kind("version: STSv1\nmode: testing\nmax_age: 1\n"),
        PolicyErrorKind::NoMx {
            mode: Mode::Testing
        }
    );
    assert_eq!(
        error_kind("version: STSv1\nmode: enforce\nmx: 192.0.2.1\nmax_age: 1\n"),
        PolicyErrorKind::NoMx {
            mode: Mode::Enforce
        }
    );
    let none = policy("version: STSv1\nmode: none\nmax_age: 1\n");
    assert!(none.mx().is_empty());
    let none_mx = policy("version: STSv1\nmode: none\nmx: a.example\nmax_age: 1\n");
    assert_eq!(none_mx.mx().len(), 1);
}

#[test]
fn r27_lf_crlf_mixed_and_no_final_terminator() {
    let lf = policy("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1");
    let crlf = policy("version: STSv1\r\nmode: enforce\r\nmx: a.example\r\nmax_age: 1\r\n");
    let mixed = policy("version: STSv1\r\nmode: enforce\nmx: a.example\r\nmax_age: 1\n");
    assert_eq!(lf, crlf);
    assert_eq!(lf, mixed);
    assert!(lf.warnings().is_empty() && mixed.warnings().is_empty());
    let e = Policy::parse("version: STSv1\rmode: none\rmax_age: 1").unwrap_err();
    assert_eq!(e.kind(), &PolicyErrorKind::BareCr);
    assert_eq!(
        e.to_string(),
        "line 1, column 15: carriage return not followed by a line feed"
    );
}

#[test]
fn r27_bare_cr_ending_a_line_is_an_error_even_at_the_end_of_the_body() {
    // `sts-policy-term = LF / CRLF`: the final terminator is optional, but a CR without its LF
    // is no terminator, wherever it stands.
    let cases = [
        // The last line ends in CR, with no LF after it.
        (
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 86400\r",
            4,
            15,
        ),
        (
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 86400 \t\r",
            4,
            17,
        ),
        ("version: STSv1\nmode: none\nmax_age: 1\r", 3, 11),
        // A last line of a lone CR after the final CRLF (not a blank line).
        ("version: STSv1\r\nmode: none\r\nmax_age: 1\r\n\r", 4, 1),
        // A middle line ending in CR, then CRLF.
        ("version: STSv1\r\nmode: none\r\r\nmax_age: 1\r\n", 2, 11),
        // A middle line ended by a CR alone.
        ("version: STSv1\nmode: none\rmax_age: 1\n", 2, 11),
    ];
    for (body, line, column) in cases {
        for profile in [Profile::Default, Profile::Strict] {
            let e = Policy::parse_bytes(body.as_bytes(), profile).expect_err(body);
            assert_eq!(e.kind(), &PolicyErrorKind::BareCr, "{body:?} {profile:?}");
            assert_eq!(
                (e.line(), e.column()),
                (Some(line), Some(column)),
                "{body:?}"
            );
            assert_eq!(
                e.to_string(),
                format!(
                    "line {line}, column {column}: carriage return not followed by a line feed"
                )
            );
            let report = Policy::lint(body.as_bytes(), profile);
            assert!(report.policy.is_none(), "{body:?} {profile:?}");
            assert_eq!(report.errors.first(), Some(&e), "{body:?} {profile:?}");
        }
        assert_eq!(Policy::parse_fast_path(body), None, "{body:?}");
    }
    // A CR directly before the LF is part of the terminator, on every line and the last.
    let p = policy("version: STSv1\r\nmode: none\r\nmax_age: 1\r\n");
    assert!(p.warnings().is_empty());
}

#[test]
fn r28_one_mx_per_line_in_a_labels() {
    let body = "version: STSv1\nmode: enforce\nmx: a.example, b.example\nmax_age: 1\n";
    assert_eq!(
        error_kind(body),
        PolicyErrorKind::NoMx {
            mode: Mode::Enforce
        }
    );
    let e = Policy::parse_strict(body).unwrap_err();
    assert!(
        matches!(e.kind(), PolicyErrorKind::InvalidMx(m) if m.problem() == &NameProblem::BadCharacter(','))
    );
    let p = policy("version: STSv1\nmode: enforce\nmx: *.xn--bcher-kva.example\nmax_age: 1\n");
    assert!(p.matches_mx("m.xn--bcher-kva.example"));
    assert!(p.matches_mx("m.bücher.example"));
    // A U-label is converted with a warning (default) or refused (strict).
    let u = policy("version: STSv1\nmode: enforce\nmx: *.bücher.example\nmax_age: 1\n");
    assert_eq!(u.mx()[0].as_str(), "*.xn--bcher-kva.example");
    assert!(matches!(
        u.warnings()[0].kind(),
        PolicyWarningKind::MxConverted { .. }
    ));
    assert!(
        Policy::parse_strict("version: STSv1\nmode: enforce\nmx: *.bücher.example\nmax_age: 1\n")
            .is_err()
    );
}

#[test]
fn policy_layout_deviations_by_profile() {
    let cases = [
        (
            "\u{feff}version: STSv1\nmode: none\nmax_age: 1",
            Layout::ByteOrderMark,
            1,
        ),
        (
            "version: STSv1\n\nmode: none\nmax_age: 1",
            Layout::BlankLine,
            2,
        ),
        (
            "version: STSv1\n  \t \nmode: none\nmax_age: 1",
            Layout::BlankLine,
            2,
        ),
        (
            "version: STSv1\n# note\nmode: none\nmax_age: 1",
            Layout::CommentLine,
            2,
        ),
        (
            "version: STSv1\n  # note\nmode: none\nmax_age: 1",
            Layout::CommentLine,
            2,
        ),
        (
            "version: STSv1\n mode: none\nmax_age: 1",
            Layout::WhitespaceBeforeKey,
            2,
        ),
        (
            "version: STSv1\nmode : none\nmax_age: 1",
            Layout::WhitespaceBeforeColon,
            2,
        ),
    ];
    for (body, layout, line) in cases {
        let p = policy(body);
        assert_eq!(p.warnings().len(), 1, "{body:?}");
        assert_eq!(
            p.warnings()[0].kind(),
            &PolicyWarningKind::Layout(layout),
            "{body:?}"
        );
        assert_eq!(p.warnings()[0].line(), line);
        let e = Policy::parse_strict(body).unwrap_err();
        assert_eq!(e.kind(), &PolicyErrorKind::Layout(layout), "{body:?}");
        assert_eq!(e.line(), Some(line));
    }
}

#[test]
fn policy_line_errors_say_where() {
    let e = Policy::parse("version: STSv1\nmode none\nmax_age: 1").unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2: expected \"key: value\", found no ':'"
    );
    let e = Policy::parse("version: STSv1\nmode: none\nmax_age: 1\n_bad: x").unwrap_err();
    assert!(matches!(e.kind(), PolicyErrorKind::InvalidKey { key } if key == "_bad"));
    let e = Policy::parse("version: STSv1\nmode: none\nmax_age: 1\next:").unwrap_err();
    assert_eq!(
        e.kind(),
        &PolicyErrorKind::InvalidExtensionValue { key: "ext".into() }
    );
    let e = Policy::parse("version: STSv1\nmode: none\nmax_age: 1\next: a\tb").unwrap_err();
    assert_eq!(
        e.kind(),
        &PolicyErrorKind::InvalidExtensionValue { key: "ext".into() }
    );
    let e = Policy::parse_bytes(b"version: STSv1\nmode: \xff", Profile::Default).unwrap_err();
    assert_eq!(e.kind(), &PolicyErrorKind::InvalidUtf8);
    assert_eq!((e.line(), e.column()), (Some(2), Some(7)));
}

#[test]
fn policy_lint_reports_every_error_and_warning() {
    let report = Policy::lint(
        b"version: STSv2\nmode: Enforce\n\nmx: a.example.\nmax_age: x\n",
        Profile::Strict,
    );
    assert!(report.policy.is_none());
    let lines: Vec<_> = report.errors.iter().map(|e| e.line()).collect();
    assert_eq!(lines, [Some(1), Some(2), Some(3), Some(4), Some(5)]);
    let ok = Policy::lint(
        b"version: STSv1\nmode: none\nmax_age: 1\nMode: enforce\n",
        Profile::Default,
    );
    assert!(ok.policy.is_some() && ok.errors.is_empty());
    assert!(matches!(
        ok.warnings[0].kind(),
        PolicyWarningKind::KeyCase {
            known: Field::Mode,
            ..
        }
    ));
}

#[test]
fn display_is_canonical_crlf_and_round_trips() {
    let p = policy(
        "mx: B.example.\nmax_age: 40000000\nmode: testing\nversion: STSv1\nmx: *.a.example\nnote: hi there\n",
    );
    assert_eq!(
        p.to_string(),
        "version: STSv1\r\nmode: testing\r\nmx: b.example\r\nmx: *.a.example\r\nmax_age: 31557600\r\nnote: hi there\r\n"
    );
    assert_eq!(Policy::parse(&p.to_string()).unwrap(), p);
    assert!(
        Policy::parse_strict(&p.to_string())
            .unwrap()
            .warnings()
            .is_empty()
    );
    assert_eq!(p.to_string().parse::<Policy>().unwrap(), p);
}

#[test]
fn builder_cannot_produce_an_invalid_policy() {
    assert_eq!(
        Policy::builder(Mode::Enforce).build().unwrap_err(),
        PolicyBuildError::NoMx {
            mode: Mode::Enforce
        }
    );
    assert_eq!(
        Policy::builder(Mode::None)
            .max_age(31557601)
            .build()
            .unwrap_err(),
        PolicyBuildError::MaxAgeTooLarge { max_age: 31557601 }
    );
    let p = Policy::builder(Mode::Testing)
        .mx(MxPattern::parse("mx.example").unwrap())
        .mx(MxPattern::parse("MX.example.").unwrap())
        .max_age(86400)
        .build()
        .unwrap();
    assert_eq!(p.mx().len(), 1);
    assert_eq!(Policy::parse_strict(&p.to_string()).unwrap(), p);
}

// ---------------------------------------------------------------------------------------------
// D. MX host validation

#[test]
fn r30_pattern_matched_against_mx_host_name_only() {
    let p = policy("version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 1\n");
    assert!(p.matches_mx("mail.example.com"));
    // Not a suffix, substring or prefix match: the MX host name must equal the pattern.
    for other in [
        "evil-mail.example.com",
        "mail.example.com.evil",
        "x.mail.example.com",
        "mail.example",
        "",
    ] {
        assert!(!p.matches_mx(other), "{other}");
    }
}

#[test]
fn r31_wildcard_matches_one_label() {
    let p = MxPattern::parse("*.example.com").unwrap();
    assert!(p.matches("mail.example.com"));
    assert!(!p.matches("example.com"));
    assert!(!p.matches("foo.bar.example.com"));
    for bad in [
        "*",
        "*.*.example.com",
        "a*.example.com",
        "mail.*.com",
        ".example.com",
    ] {
        assert!(MxPattern::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn r32_case_insensitive_without_root_dot() {
    let p = policy("version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 1\n");
    assert!(p.matches_mx("MAIL.Example.COM."));
    assert!(
        MxPattern::parse("MAIL.EXAMPLE.COM.")
            .unwrap()
            .matches("mail.example.com")
    );
}

#[test]
fn r33_implicit_mx_is_the_domain() {
    // A domain with only an A record: its implicit MX is the domain itself (RFC 5321 §5.1).
    let p = policy("version: STSv1\nmode: enforce\nmx: example.com\nmax_age: 1\n");
    assert!(p.matches_mx("example.com"));
    assert!(!p.matches_mx("www.example.com"));
}

#[test]
fn address_hosts_never_match() {
    let p = policy("version: STSv1\nmode: enforce\nmx: *.2.0.192\nmx: 192.0.2.1\nmax_age: 1\n");
    assert_eq!(p.mx().len(), 1);
    for host in [
        "192.0.2.1",
        "[192.0.2.1]",
        "2001:db8::1",
        "[IPv6:2001:db8::1]",
    ] {
        assert!(!p.matches_mx(host), "{host}");
    }
    // Also where the address is one label more than a wildcard over numeric labels.
    let w = MxPattern::parse("*.0.0.0").unwrap();
    assert!(!w.matches("0.0.0.0"));
    assert!(w.matches("a.0.0.0"));
}
