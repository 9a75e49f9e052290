//! Security headers: `nosniff` and `no-store` on every sync answer of both front doors, a device claim checked like
//! the device header, and natively a policy for an app served from `static_dir` that still lets the demo's
//! scripts, module worker and wasm run.

use crate::support::*;

#[tokio::test]
async fn a_served_app_gets_security_headers_that_allow_its_scripts_workers_and_wasm() {
    if edge() {
        return; // static_dir is the native binary's; the Worker serves assets through wrangler.
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("static-{}", id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><script type=module src=/app.js></script>",
    )
    .unwrap();
    std::fs::write(dir.join("app.js"), "export {};").unwrap();
    let server = start_server(
        &target().db_url,
        &format!("static_dir = {:?}", dir.display().to_string()),
    );
    let http = reqwest::Client::new();
    for path in ["/", "/app.js", "/health", "/sync/download", "/missing.js"] {
        let r = http.get(format!("{}{path}", server.base_url)).send().await.unwrap();
        let h = r.headers();
        let header = |name: &str| h.get(name).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"), "{path}");
        assert_eq!(header("x-frame-options").as_deref(), Some("DENY"), "{path}");
        assert_eq!(header("referrer-policy").as_deref(), Some("same-origin"), "{path}");
        let csp = header("content-security-policy").unwrap_or_default();
        let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
        for wanted in [
            "default-src 'self'",
            "script-src 'self' 'wasm-unsafe-eval'",
            "worker-src 'self'",
            "connect-src 'self'",
            "object-src 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(directives.contains(&wanted), "{path}: {wanted:?} not in {csp:?}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("'unsafe-eval'"),
            "{path}: {csp}"
        );
    }
    let page = http.get(format!("{}/", server.base_url)).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("/app.js"), "the app is served");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn api_responses_say_nosniff_without_a_static_dir() {
    if edge() {
        return; // The Worker's headers are its own front door's; only the native router is checked here.
    }
    let t = target();
    let r = reqwest::get(format!("{}/health", t.base)).await.unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(
        r.headers().get("content-security-policy").is_none(),
        "no app, no app policy"
    );
}

#[tokio::test]
async fn every_sync_answer_is_nosniff_and_not_stored_on_both_front_doors() {
    let t = target();
    let d = Device::new(&t, &new_user(), "d");
    for (path, authorised) in [
        ("/sync/download?after=0", true),
        ("/sync/capabilities", true),
        ("/sync/download?after=0", false),
        ("/health", false),
    ] {
        let mut req = d.http.get(format!("{}{path}", t.base));
        if authorised {
            req = req.bearer_auth(&d.token);
        }
        let r = req.send().await.unwrap();
        let header = |name: &str| r.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"), "{path}");
        assert_eq!(header("cache-control").as_deref(), Some("no-store"), "{path}");
    }
}

#[tokio::test]
async fn a_device_claim_follows_the_device_header_rules() {
    let t = target();
    for bad in ["a\nb".to_owned(), "d".repeat(5000)] {
        let token = token_with(serde_json::json!({"sub": new_user(), "did": bad}));
        let (status, body) = Device::with_token(&t, token, None).download_raw("after=0").await;
        assert_eq!(status, 401, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("invalid device claim"),
            "{body}"
        );
    }
}
