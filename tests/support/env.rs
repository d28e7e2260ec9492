//! The environment of a `reflex` child process that must talk to one moto
//! server and to nothing else.

/// Variables to set: endpoint, region, static test credentials, and no IMDS.
///
/// `NO_PROXY` keeps a proxy configured on the developer's machine from
/// intercepting loopback traffic.
pub fn aws_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        // Empty files, so a profile in ~/.aws cannot add a region, a role or
        // an endpoint behind the test's back.
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("NO_PROXY", "127.0.0.1,localhost"),
        ("no_proxy", "127.0.0.1,localhost"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Variables to remove because they would override the ones above or send
/// the SDK somewhere else (a real profile, a session token, a role, an
/// endpoint for one service).
pub const AWS_ENV_REMOVE: &[&str] = &[
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ENDPOINT_URL_SNS",
    "AWS_ENDPOINT_URL_EC2",
    "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING",
    "AWS_ENDPOINT_URL_CLOUDWATCH",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
];

/// Points a command (std or tokio) at a moto endpoint:
/// `Command::new(reflex).moto_env(&moto.endpoint())`.
pub trait MotoEnv {
    fn moto_env(&mut self, endpoint: &str) -> &mut Self;
}

impl MotoEnv for std::process::Command {
    fn moto_env(&mut self, endpoint: &str) -> &mut Self {
        for name in AWS_ENV_REMOVE {
            self.env_remove(name);
        }
        self.envs(aws_env(endpoint))
    }
}

impl MotoEnv for tokio::process::Command {
    fn moto_env(&mut self, endpoint: &str) -> &mut Self {
        for name in AWS_ENV_REMOVE {
            self.env_remove(name);
        }
        self.envs(aws_env(endpoint))
    }
}
