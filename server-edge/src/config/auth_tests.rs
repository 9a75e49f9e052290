use super::*;

const SECRET: &str = "config-test-secret-32-bytes-long";

/// A configuration from `toml`; with a `jwks_url`, the provider's issuer and audience are added unless `toml`
/// says something of them.
fn config(toml: &str) -> Config {
    let idp = if toml.contains("jwks_url") && !toml.contains("jwt_issuer") && !toml.contains("insecure") {
        "\njwt_issuer = 'https://id.example/'\njwt_audience = 'app'"
    } else {
        ""
    };
    Config::from_toml(&format!("{toml}{idp}")).expect("toml")
}

fn problem(c: &Config) -> String {
    c.auth().expect_err("refused").to_string()
}

#[test]
fn default_algorithms_follow_the_configured_keys() {
    let hs = config(&format!("jwt_secret = '{SECRET}'")).auth().unwrap();
    assert_eq!(hs.algorithms, [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]);
    let public = config("jwks_url = 'https://id.example/.well-known/jwks.json'")
        .auth()
        .unwrap();
    assert_eq!(
        public.algorithms,
        [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
    );
    assert_eq!(public.secret, None);
    let both = config(&format!(
        "jwt_secret = '{SECRET}'\njwks_url = ['https://a.example/jwks', 'https://b.example/jwks']"
    ))
    .auth()
    .unwrap();
    assert_eq!(both.algorithms.len(), 6);
    assert_eq!(both.jwks_urls.len(), 2);
    assert_eq!(both.claims, ClaimNames::default());
    assert_eq!(both.cache.refetch_interval, Duration::from_secs(30));
}

#[test]
fn a_secret_or_a_key_set_is_required_and_dev_signin_needs_the_secret() {
    assert!(problem(&config("")).contains("jwt_secret (or JWT_SECRET), or jwks_url"));
    let dev = config("dev_signin = true\njwks_url = 'https://id.example/jwks'");
    assert!(
        problem(&dev).contains("dev_signin signs its tokens with it"),
        "{}",
        problem(&dev)
    );
    let weak = config("jwt_secret = 'short'\njwks_url = 'https://id.example/jwks'");
    assert!(matches!(weak.auth(), Err(ConfigError::WeakSecret(5))));
}

#[test]
fn key_sets_are_fetched_over_https_or_from_this_machine_only() {
    for ok in [
        "https://id.example/jwks",
        "http://127.0.0.1:9999/jwks",
        "http://localhost/jwks",
        "http://[::1]:8080/.well-known/jwks.json",
    ] {
        assert!(config(&format!("jwks_url = '{ok}'")).auth().is_ok(), "{ok}");
    }
    for bad in [
        "http://id.example/jwks",
        "ftp://id.example/jwks",
        "id.example/jwks",
        "https://",
        "http://10.0.0.1/",
        "http://127.0.0.1:80@192.0.2.2/jwks.json",
        "http://localhost.evil.example/jwks",
        "http://127.0.0.1.nip.io/jwks",
    ] {
        assert!(
            problem(&config(&format!("jwks_url = '{bad}'"))).starts_with("jwks_url:"),
            "{bad}"
        );
    }
}

#[test]
fn configured_algorithms_need_a_key_of_their_kind() {
    let jwks = "jwks_url = 'https://id.example/jwks'";
    let ok = config(&format!("{jwks}\njwt_algorithms = ['RS256', 'PS256']"))
        .auth()
        .unwrap();
    assert_eq!(ok.algorithms, [Algorithm::RS256, Algorithm::PS256]);
    assert!(problem(&config(&format!("{jwks}\njwt_algorithms = ['HS256']"))).contains("needs jwt_secret"));
    let hs_only = format!("jwt_secret = '{SECRET}'\njwt_algorithms = ['ES256']");
    assert!(problem(&config(&hs_only)).contains("needs jwks_url"));
    assert!(problem(&config(&format!("{jwks}\njwt_algorithms = ['none']"))).contains("unknown algorithm"));
    assert!(problem(&config(&format!("{jwks}\njwt_algorithms = []"))).contains("is empty"));
}

#[test]
fn auth_settings_are_read_from_the_environment() {
    let mut c = config("");
    let env = |k: &str| {
        let v = match k {
            "OVERSYNC_JWKS_URL" => "https://a.example/jwks, https://b.example/jwks",
            "OVERSYNC_JWT_ALGORITHMS" => "ES256,EdDSA",
            "OVERSYNC_JWT_ISSUER" => "https://a.example/",
            "OVERSYNC_JWT_AUDIENCE" => "app",
            "OVERSYNC_USER_CLAIM" => "user_id",
            "OVERSYNC_DEVICE_CLAIM" => "device",
            "OVERSYNC_JWKS_CACHE_MIN_S" => "1",
            "OVERSYNC_JWKS_COOLDOWN_S" => "2",
            "OVERSYNC_JWKS_TIMEOUT_MS" => "300",
            _ => return None,
        };
        Some(v.to_owned())
    };
    c.apply_env(env).unwrap();
    let a = c.auth().unwrap();
    assert_eq!(a.jwks_urls, ["https://a.example/jwks", "https://b.example/jwks"]);
    assert_eq!(a.algorithms, [Algorithm::ES256, Algorithm::EdDSA]);
    assert_eq!(
        (a.claims.user.as_str(), a.claims.device.as_str()),
        ("user_id", "device")
    );
    assert_eq!(a.cache.min_max_age, Duration::from_secs(1));
    assert_eq!(a.cache.refetch_interval, Duration::from_secs(2));
    assert_eq!(a.cache.fetch_timeout, Duration::from_millis(300));
    let bad = c.apply_env(|k| (k == "OVERSYNC_JWKS_COOLDOWN_S").then(|| "soon".to_owned()));
    assert!(bad.unwrap_err().to_string().contains("OVERSYNC_JWKS_COOLDOWN_S"));
}

#[test]
fn the_jwks_demo_configuration_needs_no_secret_and_no_dev_signin() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/jwks.toml");
    let c = Config::from_file(&path).unwrap();
    assert!(!c.dev_signin && c.require_exp);
    let a = c.auth().expect("valid without jwt_secret");
    assert_eq!(a.algorithms, [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]);
    // The test issuer's values (tests/src/issuer.rs).
    assert_eq!(a.rules.issuer.as_deref(), Some("https://issuer.oversync.test"));
    assert_eq!(a.rules.audience.as_deref(), Some("oversync-tests"));
}

#[test]
fn a_key_set_needs_issuer_and_audience_checks_unless_loudly_opted_out() {
    let url = "jwks_url = 'https://id.example/jwks'";
    let neither = Config::from_toml(url).unwrap();
    assert!(
        problem(&neither).starts_with("jwt_issuer: is required with jwks_url"),
        "{}",
        problem(&neither)
    );
    let no_audience = Config::from_toml(&format!("{url}\njwt_issuer = 'https://id.example/'")).unwrap();
    assert!(problem(&no_audience).starts_with("jwt_audience: is required"));
    let opted_out = Config::from_toml(&format!("{url}\njwks_insecure_any_issuer_or_audience = true")).unwrap();
    assert!(opted_out.auth().is_ok());
    let secret_only = Config::from_toml(&format!("jwt_secret = '{SECRET}'")).unwrap();
    assert!(
        secret_only.auth().is_ok(),
        "HS tokens are this server's own: no issuer needed"
    );
}
