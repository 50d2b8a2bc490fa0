//! postfix-mta-sts-resolver's JSON form of a policy (S5), checked against the peer's own code
//! (its parser, `json.dumps`, its Redis `pack_entry`/`unpack_entry`), and hostile JSON (S3).

mod peer;

use mta_sts_core::Policy;
use mta_sts_store::layout::{
    LayoutError, MAX_JSON_LEN, entry_from_json, entry_to_json, policy_from_json, policy_to_json,
};

/// Policies in the forms the peer meets: key orders, wildcards, mode none without mx,
/// extensions (with characters JSON escapes and non-ASCII), LF and CRLF, a duplicate extension.
const POLICIES: &[&str] = &[
    "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n",
    "version: STSv1\nmode: testing\nmx: mx1.example.org\nmax_age: 86400\n",
    "version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n",
    "max_age: 31557600\r\nmx: *.a.example\r\nmode: enforce\r\nversion: STSv1\r\nmx: b.example\r\n",
    "version: STSv1\r\nmode: enforce\r\nx-note: \"quoted\" \\ back slash\r\nmx: mail.example.com\r\nmax_age: 1\r\n",
    "version: STSv1\r\nmode: testing\r\nmx: mail.example.com\r\nmax_age: 0\r\nx-owner: Zoë Ω 🦀\r\n",
    "version: STSv1\r\nx-a: 1\r\nmode: enforce\r\nx-b: 2\r\nmx: mail.example.com\r\nx-a: 3\r\nmax_age: 300\r\n",
];

/// The policy text that comes back from the peer's JSON of `POLICIES[i]`: the canonical text,
/// except that a dict keeps one value per key (the last, at the first key's place).
fn after_json(i: usize) -> String {
    if i == 6 {
        return "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 300\r\nx-a: 3\r\nx-b: 2\r\n".into();
    }
    Policy::parse(POLICIES[i]).unwrap().to_string()
}

/// The peer's fetch path for a policy text: `parse_mta_sts_policy`, `max_age` to int (as
/// `resolver.py` does), then the JSON its caches store.
const PEER_DUMPS: &str = r#"
import json, sys
from postfix_mta_sts_resolver.utils import parse_mta_sts_policy
out = []
for text in json.load(sys.stdin):
    pol = parse_mta_sts_policy(text)
    pol['max_age'] = int(pol['max_age'])
    out.append(json.dumps(pol))
json.dump(out, sys.stdout)
"#;

#[test]
fn s5_policy_to_json_is_the_peers_json_byte_for_byte() {
    let Some(py) = peer::python() else { return };
    let theirs: Vec<String> = serde_json::from_str(&peer::run(
        &py,
        PEER_DUMPS,
        &serde_json::to_string(POLICIES).unwrap(),
    ))
    .unwrap();
    for (text, theirs) in POLICIES.iter().zip(&theirs) {
        let ours = policy_to_json(text).unwrap();
        assert_eq!(&ours, theirs, "policy {text:?}");
    }
}

#[test]
fn s5_peer_reads_the_entries_we_write() {
    let Some(py) = peer::python() else { return };
    // The Redis member: 16 random bytes, then our JSON; the peer's unpack_entry must give back
    // the id and the dict its own parser makes of the text.
    let script = r#"
import json, sys
from postfix_mta_sts_resolver.utils import parse_mta_sts_policy
from postfix_mta_sts_resolver.redis_cache import unpack_entry
res = []
for text, member in json.load(sys.stdin):
    e = unpack_entry(b'\x01' * 16 + member.encode('utf-8'))
    pol = parse_mta_sts_policy(text)
    pol['max_age'] = int(pol['max_age'])
    res.append([e.pol_id, e.pol_body == pol, list(e.pol_body) == list(pol)])
json.dump(res, sys.stdout)
"#;
    let input: Vec<(String, String)> = POLICIES
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), entry_to_json(&format!("id{i}é"), t).unwrap()))
        .collect();
    let out = peer::run(&py, script, &serde_json::to_string(&input).unwrap());
    let res: Vec<(String, bool, bool)> = serde_json::from_str(&out).unwrap();
    assert_eq!(res.len(), POLICIES.len());
    for (i, (id, same, same_order)) in res.into_iter().enumerate() {
        assert_eq!(id, format!("id{i}é"));
        assert!(same && same_order, "peer read policy {i} differently");
    }
}

#[test]
fn s5_we_read_the_entries_the_peer_writes() {
    let Some(py) = peer::python() else { return };
    let script = r#"
import json, sys
from postfix_mta_sts_resolver.utils import parse_mta_sts_policy
from postfix_mta_sts_resolver.redis_cache import pack_entry
from postfix_mta_sts_resolver.base_cache import CacheEntry
out = []
for i, text in enumerate(json.load(sys.stdin)):
    pol = parse_mta_sts_policy(text)
    pol['max_age'] = int(pol['max_age'])
    out.append(pack_entry(CacheEntry(1700000000 + i, 'pid%d\u00e9' % i, pol))[16:].decode('utf-8'))
json.dump(out, sys.stdout)
"#;
    let members: Vec<String> = serde_json::from_str(&peer::run(
        &py,
        script,
        &serde_json::to_string(POLICIES).unwrap(),
    ))
    .unwrap();
    for (i, (text, member)) in POLICIES.iter().zip(&members).enumerate() {
        let (id, policy) = entry_from_json(member).unwrap();
        assert_eq!(id, format!("pid{i}é"));
        assert_eq!(policy, after_json(i), "{text:?} -> {member}");
        // And the policy alone (the SQL caches' pol_body).
        let body = &member[member.find('{').unwrap()..member.len() - 1];
        assert_eq!(policy_from_json(body).unwrap(), policy);
    }
}

#[test]
fn s5_peer_keys_of_non_field_lines_are_skipped() {
    // The peer's parser makes a key "" of a blank line and a key "# …" of a comment line.
    let json = r##"{"mx": ["mail.example.com"], "version": "STSv1", "": "", "# hi": "", "mode": "enforce", "max_age": 60}"##;
    assert_eq!(
        policy_from_json(json).unwrap(),
        "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 60\r\n"
    );
}

#[test]
fn s5_round_trip_keeps_the_policy() {
    for (i, text) in POLICIES.iter().enumerate() {
        let json = policy_to_json(text).unwrap();
        assert_eq!(policy_from_json(&json).unwrap(), after_json(i));
    }
}

fn err(json: &str) -> LayoutError {
    policy_from_json(json).expect_err(json)
}

#[test]
fn s3_hostile_policy_json_is_a_typed_error() {
    let good =
        r#"{"mx": ["mail.example.com"], "version": "STSv1", "mode": "enforce", "max_age": 60}"#;
    assert!(policy_from_json(good).is_ok());
    // Truncated anywhere: an error, never a panic.
    for cut in 0..good.len() {
        assert!(
            matches!(err(&good[..cut]), LayoutError::Syntax { .. }),
            "cut {cut}"
        );
    }
    assert!(matches!(err("[1, 2]"), LayoutError::WrongType { .. }));
    assert!(matches!(err("\"x\""), LayoutError::WrongType { .. }));
    assert_eq!(
        err(r#"{"mx": "mail.example.com", "version": "STSv1", "mode": "enforce", "max_age": 60}"#),
        LayoutError::WrongType {
            path: "policy.mx".into(),
            expected: "a list of strings"
        }
    );
    assert_eq!(
        err(r#"{"mx": ["a.example", 5], "version": "STSv1", "mode": "enforce", "max_age": 60}"#),
        LayoutError::WrongType {
            path: "policy.mx[1]".into(),
            expected: "a string"
        }
    );
    for max_age in ["\"60\"", "-1", "60.5", "1e3", "null", "4294967296"] {
        let j =
            format!(r#"{{"mx": [], "version": "STSv1", "mode": "none", "max_age": {max_age}}}"#);
        assert!(
            matches!(
                err(&j),
                LayoutError::WrongType { .. } | LayoutError::BadValue { .. }
            ),
            "{max_age}"
        );
    }
    assert!(matches!(
        err(r#"{"mx": [], "version": "STSv1", "mode": 1, "max_age": 60}"#),
        LayoutError::WrongType { .. }
    ));
    assert_eq!(
        err(r#"{"mx": [], "version": "STSv1", "max_age": 60}"#),
        LayoutError::MissingKey { key: "mode" }
    );
    assert_eq!(
        err(r#"{"version": "STSv1", "mode": "none", "max_age": 60}"#),
        LayoutError::MissingKey { key: "mx" }
    );
    assert!(matches!(
        err(r#"{"mx": [], "mode": "none", "mode": "enforce", "version": "STSv1", "max_age": 60}"#),
        LayoutError::DuplicateKey { .. }
    ));
    // A line break would smuggle another field into the rebuilt text.
    assert!(matches!(
        err(
            r#"{"mx": [], "version": "STSv1", "mode": "none", "max_age": 60, "x-a": "1\r\nmode: enforce"}"#
        ),
        LayoutError::BadValue { .. }
    ));
    assert!(matches!(
        err(
            r#"{"mx": ["a.example\nmx: evil.example"], "version": "STSv1", "mode": "enforce", "max_age": 60}"#
        ),
        LayoutError::BadValue { .. }
    ));
    // Valid JSON, invalid policy: the core says no.
    assert!(matches!(
        err(r#"{"mx": [], "version": "STSv1", "mode": "enforce", "max_age": 60}"#),
        LayoutError::Policy(_)
    ));
    assert!(matches!(
        err(r#"{"mx": [], "version": "STSv2", "mode": "none", "max_age": 60}"#),
        LayoutError::Policy(_)
    ));
    // Deep nesting: serde_json's depth limit, an error.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        err(&deep),
        LayoutError::TooLarge { .. } | LayoutError::Syntax { .. }
    ));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(matches!(err(&deep), LayoutError::Syntax { .. }));
    // Giant: refused before parsing.
    let giant = format!(r#"{{"mx": [], "x": "{}"}}"#, "a".repeat(MAX_JSON_LEN));
    assert_eq!(err(&giant), LayoutError::TooLarge { len: giant.len() });
    // Errors say what and where.
    assert_eq!(
        err(r#"{"mx": ["a.example", 5]}"#).to_string(),
        "policy.mx[1]: expected a string"
    );
}

#[test]
fn s3_hostile_entry_json_is_a_typed_error() {
    let good = entry_to_json("id1", POLICIES[0]).unwrap();
    assert!(entry_from_json(&good).is_ok());
    for cut in 0..good.len() {
        assert!(entry_from_json(&good[..cut]).is_err(), "cut {cut}");
    }
    for bad in [
        "{}",
        "[]",
        r#"["id"]"#,
        r#"[1, {}]"#,
        r#"["a", {}, 3]"#,
        r#"["a", "policy"]"#,
        r#"["a\nb", {"mx": [], "version": "STSv1", "mode": "none", "max_age": 60}]"#,
    ] {
        assert!(
            matches!(
                entry_from_json(bad),
                Err(LayoutError::WrongType { .. }
                    | LayoutError::BadValue { .. }
                    | LayoutError::MissingKey { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn s5_invalid_policy_text_is_not_written() {
    assert!(matches!(
        policy_to_json("version: STSv1\r\nmode: enforce\r\nmax_age: 60\r\n"),
        Err(LayoutError::Policy(_))
    ));
    assert!(entry_to_json("id", "garbage").is_err());
}
