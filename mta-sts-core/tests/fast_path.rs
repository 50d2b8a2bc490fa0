//! The policy parser's fast path against the full parser (R22-R28): on near-valid policies,
//! `Policy::parse` (fast path first) and the full parser alone give the same result, errors
//! (with line and column), warnings and text, under both profiles; and what the fast path
//! accepts, the full parser accepts alike, without warnings.

use mta_sts_core::{Policy, PolicyError, Profile};
use proptest::prelude::*;

/// The whole outcome of a parse, as text: the policy with its warnings and extensions (Debug),
/// its canonical text, or the error with its position and message.
fn outcome(r: &Result<Policy, PolicyError>) -> String {
    match r {
        Ok(p) => format!("ok {p:?}\n{p}"),
        Err(e) => format!("err {e:?}\n{e}"),
    }
}

/// Checks both paths on `body`; true when the fast path took it.
fn agree(body: &str) -> Result<bool, TestCaseError> {
    let full = Policy::parse_full_path(body, Profile::Default);
    prop_assert_eq!(outcome(&Policy::parse(body)), outcome(&full), "{:?}", body);
    prop_assert_eq!(
        outcome(&Policy::parse_strict(body)),
        outcome(&Policy::parse_full_path(body, Profile::Strict)),
        "{:?}",
        body
    );
    prop_assert_eq!(
        outcome(&Policy::parse_bytes(body.as_bytes(), Profile::Default)),
        outcome(&full),
        "{:?}",
        body
    );
    let Some(fast) = Policy::parse_fast_path(body) else {
        return Ok(false);
    };
    let full = full.map_err(|e| TestCaseError::fail(format!("{body:?}: fast ok, full {e}")))?;
    prop_assert!(full.warnings().is_empty(), "{:?}", body);
    prop_assert_eq!(format!("{fast:?}"), format!("{full:?}"));
    Ok(true)
}

/// An `mx` value: mostly valid and canonical, else one of the cases the fast path leaves to the
/// full parser (upper case, root dot, IPv4, U-labels, bad characters and labels).
fn mx_value() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => "(\\*\\.)?([a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?\\.){0,3}[a-z]([a-z0-9-]{0,8}[a-z])?",
        1 => "(\\*\\.)?[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?){0,3}",
        1 => "(\\*\\.)?[a-zA-Z0-9.-]{0,20}\\.?",
        1 => "(\\*\\.)?[0-9]{1,3}(\\.[0-9]{1,3}){0,4}",
        1 => "(\\*\\.)?[a-z\u{e9}\u{fc}\u{3002}]{1,5}\\.example",
        1 => "[ -~]{0,12}",
        1 => Just("*.mail.example.com".to_owned()),
        1 => "[a-z]{1,63}\\.[a-z]{60,70}\\.com",
    ]
}

/// A line of a near-valid policy, without its end.
fn line() -> impl Strategy<Value = String> {
    let ws = "[ \t]{0,2}";
    prop_oneof![
        3 => (ws, mx_value(), ws).prop_map(|(g, v, t)| format!("mx:{g}{v}{t}")),
        1 => (ws, "STSv1|STSv2|stsv1|STSv1x|", ws).prop_map(|(g, v, t)| format!("version:{g}{v}{t}")),
        1 => (ws, "enforce|testing|none|Enforce|enforced|non|", ws)
            .prop_map(|(g, v, t)| format!("mode:{g}{v}{t}")),
        1 => (ws, "[0-9]{1,11}|-1|1e5|86400s|", ws)
            .prop_map(|(g, v, t)| format!("max_age:{g}{v}{t}")),
        1 => "[ \t]{0,2}(version|mode|mx|max_age|Mode|MX|x-ext|a_b)[ \t]{0,2}:[ \t]{0,2}[ -~]{0,12}",
        1 => "[ \t]{0,2}(#[ -~]{0,8})?",
        1 => "[ -~\t\r\u{feff}\u{e9}]{0,20}",
    ]
}

/// A line end: mostly LF or CRLF, now and then a bare CR or a blank line.
fn eol() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        20 => Just("\n"),
        20 => Just("\r\n"),
        1 => Just("\r"),
        1 => Just("\n\n"),
        1 => Just(" \r\n"),
    ]
}

/// A valid policy body in the usual form, with a few lines from [`line`] mixed in.
fn body() -> impl Strategy<Value = String> {
    (
        "enforce|testing|none",
        prop::collection::vec(mx_value(), 0..6),
        "[0-9]{1,8}|31557600|31557601|0",
        prop_oneof![
            3 => Just(Vec::new()),
            1 => prop::collection::vec((any::<prop::sample::Index>(), line()), 1..3),
        ],
        prop::collection::vec(eol(), 1..4),
        prop_oneof![4 => Just(""), 8 => eol(), 1 => Just("\u{feff}")],
        prop::bool::weighted(0.05),
    )
        .prop_map(|(mode, mx, max_age, extra, eols, end, bom)| {
            let mut lines = vec![
                "version: STSv1".to_owned(),
                format!("mode: {mode}"),
                format!("max_age: {max_age}"),
            ];
            lines.extend(mx.into_iter().map(|m| format!("mx: {m}")));
            for (at, l) in extra {
                lines.insert(at.index(lines.len() + 1), l);
            }
            let mut body = String::from(if bom { "\u{feff}" } else { "" });
            for (i, l) in lines.iter().enumerate() {
                if i > 0 {
                    body.push_str(eols[i % eols.len()]);
                }
                body.push_str(l);
            }
            body.push_str(end);
            body
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn r22_fast_path_agrees_with_full_parser(body in body()) {
        agree(&body)?;
    }

    #[test]
    fn r22_fast_path_agrees_with_full_parser_on_arbitrary_lines(
        lines in prop::collection::vec(line(), 0..8),
        crlf in any::<bool>(),
    ) {
        agree(&lines.join(if crlf { "\r\n" } else { "\n" }))?;
    }
}

#[test]
fn r27_usual_policies_take_the_fast_path() {
    let usual = [
        "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: backup.example.com\nmx: *.mx.example.net\nmax_age: 604800\n",
        "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 604800\r\n",
        "max_age:0\nmode:\tnone \t\nversion: STSv1",
        "version: STSv1\r\nmode: testing\nmx: *.a-b.example\r\nmax_age: 31557600\r\n",
        "version: STSv1\nmode: enforce\nmx: a.b.c.d.e.f.g.h.i.j\nmx: b\nmx: c\nmx: d\nmx: e\nmx: f\nmx: g\nmx: h\nmx: i\nmx: *.192.0.2.1\nmax_age: 1\n",
    ];
    // Everything else goes to the full parser, which has the warnings and errors.
    let unusual = [
        "version: STSv1\nmode: enforce\nmx: MAIL.example.com\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: mail.example.com.\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: 192.0.2.1\nmx: a.example\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a.example\nmx: a.example\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n",
        "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n\n",
        "version: STSv1\nmode: enforce\nmx: a.example\r\r\nmax_age: 1\n",
        "version: STSv1\r\nmode: testing\nmx: *.a-b.example\r\nmax_age: 31557600\r",
        "version: STSv1\nmode: enforce\nmode: none\nmx: a.example\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\nx-ext: 1\n",
        "\u{feff}version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmax_age: 1\n",
        "version: STSv1\nmode : enforce\nmx: a.example\nmax_age: 1\n",
        " version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 00000000001\n",
    ];
    let cases = usual.map(|b| (b, true)).into_iter();
    for (body, fast) in cases.chain(unusual.map(|b| (b, false))) {
        assert_eq!(Policy::parse_fast_path(body).is_some(), fast, "{body:?}");
        assert_eq!(agree(body).unwrap(), fast, "{body:?}");
    }
}
