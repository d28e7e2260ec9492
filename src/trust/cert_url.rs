//! Where an SNS signing certificate may come from.
//!
//! A `SigningCertURL` is accepted only over HTTPS, from the SNS host of the
//! topic's own region and partition, at a path shaped like an SNS signing
//! certificate. When the SNS endpoint is overridden for the SDK (an
//! emulator, a VPC endpoint), the same path is fetched from that endpoint
//! instead. Nothing else is ever fetched.

use std::fmt;

/// Where to fetch a certificate from, once its URL has been accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertLocation {
    /// The URL to fetch: the `SigningCertURL` itself, or the same path on
    /// the overridden endpoint.
    pub fetch_url: String,
    /// The certificate's own path, `/SimpleNotificationService-….pem`.
    pub path: String,
    /// The region the certificate signs for (the topic's).
    pub region: String,
    /// Fetched from an overridden endpoint that is not an AWS host (an
    /// emulator): the only case where the Subject leniency may apply.
    pub from_emulator: bool,
}

/// Why a `SigningCertURL` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertUrlRefused(pub String);

impl fmt::Display for CertUrlRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The DNS suffix of SNS hosts in a partition.
fn dns_suffix(partition: &str) -> Option<&'static str> {
    match partition {
        "aws" | "aws-us-gov" => Some("amazonaws.com"),
        "aws-cn" => Some("amazonaws.com.cn"),
        "aws-iso" => Some("c2s.ic.gov"),
        "aws-iso-b" => Some("sc2s.sgov.gov"),
        _ => None,
    }
}

/// Whether `host` is an AWS service host (any partition).
pub fn is_aws_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    [
        "amazonaws.com",
        "amazonaws.com.cn",
        "c2s.ic.gov",
        "sc2s.sgov.gov",
        "api.aws",
    ]
    .iter()
    .any(|suffix| host == *suffix || host.ends_with(&format!(".{suffix}")))
}

/// Checks a `SigningCertURL` against the topic's partition and region, and
/// says where to fetch it: from AWS, or from `endpoint` when the SNS
/// endpoint is overridden (`scheme://host[:port]`, no path).
pub fn locate(
    url: &str,
    partition: &str,
    region: &str,
    endpoint: Option<&str>,
) -> Result<CertLocation, CertUrlRefused> {
    let refuse = |why: &str| {
        Err(CertUrlRefused(format!(
            "SigningCertURL {url:?} refused: {why}"
        )))
    };
    let Some(rest) = url.strip_prefix("https://") else {
        return refuse("not https");
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.contains(['@', ':']) {
        return refuse("a user or port in the host");
    }
    let Some(suffix) = dns_suffix(partition) else {
        return refuse(&format!("unknown partition {partition:?}"));
    };
    if !is_region(region) {
        return refuse(&format!("topic region {region:?} is not a region"));
    }
    let expected = format!("sns.{region}.{suffix}");
    if !host.eq_ignore_ascii_case(&expected) {
        return refuse(&format!("host is not {expected}"));
    }
    if !is_cert_path(path) {
        return refuse("path is not /SimpleNotificationService-<id>.pem");
    }
    let (fetch_url, from_emulator) = match endpoint {
        None => (url.to_owned(), false),
        Some(endpoint) => {
            let endpoint = endpoint.trim_end_matches('/');
            let endpoint_host = endpoint
                .split_once("://")
                .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or(""))
                .unwrap_or("");
            (format!("{endpoint}{path}"), !is_aws_host(endpoint_host))
        }
    };
    Ok(CertLocation {
        fetch_url,
        path: path.to_owned(),
        region: region.to_owned(),
        from_emulator,
    })
}

/// `/SimpleNotificationService-<letters and digits>.pem`, nothing more (no
/// query, no fragment, no further segments).
fn is_cert_path(path: &str) -> bool {
    path.strip_prefix("/SimpleNotificationService-")
        .and_then(|rest| rest.strip_suffix(".pem"))
        .is_some_and(|id| {
            !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// A region code: lowercase letters and digits in dash-separated words
/// (`us-east-1`, `cn-north-1`, `us-gov-west-1`).
fn is_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 32
        && region.split('-').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem";

    #[test]
    fn the_sns_host_of_the_topic_region_is_accepted() {
        let loc = locate(GOOD, "aws", "us-east-1", None).expect("accepted");
        assert_eq!(loc.fetch_url, GOOD);
        assert!(!loc.from_emulator);
        let cn = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc123.pem";
        assert!(locate(cn, "aws-cn", "cn-north-1", None).is_ok());
        let gov = "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem";
        assert!(locate(gov, "aws-us-gov", "us-gov-west-1", None).is_ok());
    }

    #[test]
    fn other_schemes_hosts_and_paths_are_refused() {
        let refused = |url: &str| {
            let e = locate(url, "aws", "us-east-1", None).expect_err(url);
            e.0
        };
        assert!(refused(&GOOD.replace("https://", "http://")).contains("not https"));
        assert!(
            refused(&GOOD.replace("sns.us-east-1.amazonaws.com", "evil.example")).contains("host")
        );
        assert!(
            refused(&GOOD.replace(".amazonaws.com/", ".amazonaws.com.evil.example/"))
                .contains("host")
        );
        assert!(refused(&GOOD.replace("sns.us-east-1", "sns.eu-west-1")).contains("host"));
        assert!(refused(&GOOD.replace("sns.us-east-1", "s3.us-east-1")).contains("host"));
        assert!(refused(&GOOD.replace("https://", "https://user@")).contains("user or port"));
        assert!(refused(&GOOD.replace(".com/", ".com:8443/")).contains("user or port"));
        assert!(refused(&GOOD.replace(".pem", ".pem?x=1")).contains("path"));
        assert!(refused(&GOOD.replace("SimpleNotificationService-", "other-")).contains("path"));
        assert!(refused(&GOOD.replace(
            "/SimpleNotificationService",
            "/x/../SimpleNotificationService"
        ))
        .contains("path"));
        assert!(refused("https://sns.us-east-1.amazonaws.com").contains("path"));
        // The China host outside the China partition, and the reverse.
        let cn = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-a.pem";
        assert!(locate(cn, "aws", "cn-north-1", None).is_err());
        assert!(locate(GOOD, "aws-cn", "us-east-1", None).is_err());
        assert!(locate(GOOD, "aws", "US-EAST-1", None).is_err());
    }

    #[test]
    fn an_overridden_endpoint_serves_the_same_path() {
        let loc =
            locate(GOOD, "aws", "us-east-1", Some("http://127.0.0.1:5000/")).expect("accepted");
        assert_eq!(
            loc.fetch_url,
            "http://127.0.0.1:5000/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
        );
        assert!(loc.from_emulator);
        let vpce = locate(
            GOOD,
            "aws",
            "us-east-1",
            Some("https://sns-fips.us-east-1.amazonaws.com"),
        )
        .expect("accepted");
        assert!(!vpce.from_emulator, "an AWS endpoint is never an emulator");
        // The URL in the message is still checked.
        assert!(locate(
            "https://evil.example/SimpleNotificationService-a.pem",
            "aws",
            "us-east-1",
            Some("http://127.0.0.1:5000")
        )
        .is_err());
    }

    #[test]
    fn aws_hosts() {
        assert!(is_aws_host("sns.us-east-1.amazonaws.com"));
        assert!(is_aws_host("SNS.cn-north-1.amazonaws.com.cn"));
        assert!(!is_aws_host("127.0.0.1"));
        assert!(!is_aws_host("amazonaws.com.evil.example"));
        assert!(!is_aws_host("notamazonaws.com"));
    }
}
