//! TLS on the HTTP and gRPC port (`--tls-cert`, `--tls-key`), with a certificate made for the
//! test by the `openssl` command: pushes and queries over HTTPS, HTTP/2 negotiated by ALPN
//! (what gRPC clients need) and HTTP/1.1 alike; no plaintext on the port; a client that does
//! not trust the certificate is refused; a missing key file stops startup with a clear error.

use std::path::Path;
use std::process::Command;

use prost::Message;
use stackdrift_tests::client::{cpu_profile, now_ns, push_request};
use stackdrift_tests::process::Stackdrift;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_port_speaks_tls_when_given_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ca = dir.path().join("ca.pem");
    // A CA, and a server certificate for 127.0.0.1 signed by it.
    let ext = dir.path().join("ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for args in [
        [
            &["req", "-x509"][..],
            &ec,
            &["-days", "1", "-subj", "/CN=stackdrift test CA"],
        ]
        .concat()
        .into_iter()
        .map(str::to_owned)
        .chain(["-keyout".into(), p("ca.key"), "-out".into(), p("ca.pem")])
        .collect::<Vec<_>>(),
        [&["req"][..], &ec, &["-subj", "/CN=localhost"]]
            .concat()
            .into_iter()
            .map(str::to_owned)
            .chain(["-keyout".into(), p("key.pem"), "-out".into(), p("leaf.csr")])
            .collect(),
        ["x509", "-req", "-days", "1", "-CAcreateserial", "-in"]
            .into_iter()
            .map(str::to_owned)
            .chain([
                p("leaf.csr"),
                "-CA".into(),
                p("ca.pem"),
                "-CAkey".into(),
                p("ca.key"),
            ])
            .chain([
                "-extfile".into(),
                p("ext.cnf"),
                "-out".into(),
                p("cert.pem"),
            ])
            .collect(),
    ] {
        let made = Command::new("openssl")
            .args(&args)
            .output()
            .expect("running openssl");
        assert!(
            made.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_stackdrift"));

    // A key that is not there: startup fails and says which file.
    let missing = dir.path().join("missing.pem");
    let out = Command::new(bin)
        .current_dir(dir.path())
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("reading the TLS private key") && stderr.contains("missing.pem"),
        "{stderr}"
    );

    let sd = Stackdrift::start_in(
        bin,
        "tls",
        dir.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let https = sd.url.replacen("http://", "https://", 1);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let h2 = reqwest::Client::builder()
        .add_root_certificate(ca.clone())
        .build()
        .unwrap();
    let h1 = reqwest::Client::builder()
        .add_root_certificate(ca)
        .http1_only()
        .build()
        .unwrap();

    // A push over Connect: HTTP/2, chosen by ALPN.
    let profile = cpu_profile(now_ns(), 10, &[(&["main", "tls.handshake"], 7)]);
    let body = push_request(&[("service_name", "secure")], profile).encode_to_vec();
    let resp = h2
        .post(format!("{https}/push.v1.PusherService/Push"))
        .header("content-type", "application/proto")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);

    // A query over HTTP/1.1 sees it.
    let resp = h1
        .post(format!("{https}/api/v1/sql"))
        .body("SELECT sum(value) AS v FROM samples WHERE service_name = 'secure'")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status(), 200);
    let rows: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(rows[0]["v"], 7, "{rows}");

    // No plaintext on the port, and no connection without trusting the certificate.
    let plain = reqwest::Client::new()
        .get(format!("{}/ready", sd.url))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plaintext HTTP was served"
    );
    let untrusted = reqwest::Client::new()
        .get(format!("{https}/ready"))
        .send()
        .await;
    assert!(
        untrusted.is_err(),
        "a client that does not trust the certificate connected"
    );
    // The server still answers after those failed handshakes.
    let resp = h2.get(format!("{https}/ready")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
