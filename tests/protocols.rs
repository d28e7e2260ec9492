//! Every AWS SDK crate reflex builds speaks a wire protocol moto (the
//! emulator of the end-to-end tests) speaks too.
//!
//! Each `aws-sdk-*` crate names its protocol in its Cargo metadata
//! (`[package.metadata.smithy] protocol`). When AWS moves a service to
//! another protocol, a routine `cargo update` would silently take the
//! end-to-end tests away from that service: `aws-sdk-cloudwatch` 1.100+
//! speaks only CBOR (`rpcv2Cbor`), which moto does not, and is pinned for
//! that reason (getmoto/moto#9195). This test fails first.

use std::collections::BTreeMap;
use std::process::Command;

/// The protocols moto 5.2 serves.
const MOTO_SPEAKS: &[&str] = &[
    "aws.protocols#awsQuery",
    "aws.protocols#ec2Query",
    "aws.protocols#awsJson1_0",
    "aws.protocols#awsJson1_1",
    "aws.protocols#restJson1",
    "aws.protocols#restXml",
];

/// The service crates reflex itself calls (the credential-chain crates
/// `aws-sdk-sso*`/`-sts` come with aws-config and are checked as well).
const CALLED: &[&str] = &[
    "aws-sdk-sqs",
    "aws-sdk-sns",
    "aws-sdk-cloudwatch",
    "aws-sdk-ec2",
    "aws-sdk-elasticloadbalancing",
    "aws-sdk-elasticloadbalancingv2",
    "aws-sdk-autoscaling",
    "aws-sdk-ssm",
    "aws-sdk-dynamodb",
];

/// The host's target triple (`rustc -vV`): `cargo metadata --offline`
/// needs every dependency of every platform downloaded unless filtered to
/// one, and a fresh machine has only the host's.
fn host_triple() -> String {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .unwrap_or_else(|e| panic!("cannot run rustc -vV: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("rustc -vV names no host"))
}

fn sdk_protocols() -> BTreeMap<String, (String, Option<String>)> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host_triple()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo metadata: {e}"));
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("cargo metadata printed no JSON: {e}"));
    let mut found = BTreeMap::new();
    for p in v["packages"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or_default();
        if !name.starts_with("aws-sdk-") {
            continue;
        }
        let version = p["version"].as_str().unwrap_or_default().to_string();
        let protocol = p
            .pointer("/metadata/smithy/protocol")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string);
        found.insert(name.to_string(), (version, protocol));
    }
    found
}

#[test]
fn every_aws_sdk_crate_speaks_a_protocol_moto_serves() {
    let found = sdk_protocols();
    for name in CALLED {
        assert!(
            found.contains_key(*name),
            "{name} is not in the dependency graph: {:?}",
            found.keys()
        );
    }
    for (name, (version, protocol)) in &found {
        let Some(protocol) = protocol else {
            panic!("{name} {version} names no protocol in [package.metadata.smithy]");
        };
        assert!(
            MOTO_SPEAKS.contains(&protocol.as_str()),
            "{name} {version} speaks {protocol}, which moto does not serve: pin the last version \
             that speaks one of {MOTO_SPEAKS:?} (as aws-sdk-cloudwatch is pinned in Cargo.toml)"
        );
    }
    // The pinned CloudWatch crate is still the Query one.
    assert_eq!(
        found["aws-sdk-cloudwatch"].1.as_deref(),
        Some("aws.protocols#awsQuery")
    );
}
