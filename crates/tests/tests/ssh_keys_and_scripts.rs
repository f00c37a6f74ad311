//! SSH keys and user scripts (spec §7, §9), body encodings and input errors.

use openwinv_tests::{Body, Server};
use reqwest::Method;
use serde_json::json;

use openwinv_tests::ED25519;
const RSA2048: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDfnTy0LzKfGu7L6AxmXJGqkqQz0V3aH+1voUvacL1gIACA9COfbere5XkNnJczrpxCgrvM4W9fm3GxNavBc6kvxuPYimHAW/Fpe+Y73XmQtQOJbV3H7uQIY+YHgwCrIsOLp3+5fKk6ljVh451bSKpEYJcxso393i20QDTBR62y6Q9m+Z1FzdDu7T4D7w9u/D56EuNoqZ0u9+29pWHEhpmqxjVUpukY9Q0Xrfvp6quU/TTYS/51/YAm0PxxhDVvLVGSoFRszy9/vl+ev4qOQ3gT1MscBBfziNV30hbyzaR9ifOx1Ju41QmmN8nxUyKvEP5H5suK12X0srbq/8O+FBNp root@vm";
const RSA2048_FP: &str = "SHA256:Jb912pnZvREH1hkjCRxD5saGh7GGRa/1QlDfGi+AO+U";
const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBNZA6DKncJKMn9s4FbkZ6yqrM4F1Jr28dsvmryz8OOM9hGG6yAArhCxYyxmuS82HoUOIvnBtPibsmVmKdZoyE44= root@vm";
const ECDSA_FP: &str = "SHA256:i+I3OtcvakBRWcu/z1Pnxq1cMYhQUWXaZwwVf+8um4w";
const RSA1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCekFQ6OM1KHgDXR7TP0IfTPWTKoeTW1VaqeRF8AR7bM0oXylcUJTC06Ubq41S80P2lnBGUQtYCh+mDdaaLMRzYnTr6Cnipte1GyXqBKrifyDKRkyYn+zmdgg9VpVwKRtb8rOsVCjopdnYvY6653aWREHYkqWZMajsKtXVCIAZUbw== root@vm";
const DSA: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBAOEZEcWb4BpVu95D4pDSErP+P1MKy0vUerFKw/Bo/H0paWSJn4Jtuv2WI62p9UB3yrlAFyXSaVCSb370DlxkPQdW9zOyA10uAYDR5bP2RlZ2p0NU+9uW8v2U/COC+Nz+hq98xqfS7/7XyO+1vyX/21Mf5FCxLx+b5toBudMEdyklAAAAFQDpVs2Zzw041VG7ciXFN69/gh+XGQAAAIEAs3TUrrt5gERE5QegT2J3gQKEl2tebqTtYI/3vXpML/Q6Sg+qAtJMfqHrhciv6Ug0ITl6gRabw2VZwpvDCyfenefEYkbJe0YA+gIEHkpjJ3IwNXRsYAaYfQuT9FT7Y5Pc3MRu7DIyltl7WraBLG6mTXPbnttShl/+DOX4x4iMaDkAAACAYF80M7Pl7MZ6mlZkUeW/I5P72gH9yRxyxUL6J43J0Q5SPQHY7VqRSVzjaaUdwVM8HTYPtokFiz31WpJINrFykQlYGlVSKC3uSdov0QOkGwRO6/7BIsW7VQKwnsRGy1ZGC+JCccopGb09eXaG2xpUA1FaGteAvz3qRkB+4WjogmY= root@vm";

async fn create_key(s: &Server, body: Body) -> openwinv_tests::Resp {
    s.call(Method::POST, "/v1/auth/ssh_key", Some(body)).await
}

#[tokio::test]
async fn ssh_keys_are_created_listed_and_deleted() {
    let s = Server::start().await;
    assert!(s.get("/v1/auth/ssh_key").await.ok_rows().is_empty());
    let r = create_key(&s, Body::Json(json!({"name": "  노트북 키  ", "public_key": RSA2048}))).await;
    let row = r.ok_rows()[0].clone();
    assert_eq!(row["name"], "노트북 키", "names are trimmed, Unicode kept");
    assert_eq!(row["fingerprint"], RSA2048_FP);
    let id = row["ssh_key_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("SSHKEY-") && id.len() == "SSHKEY-".len() + 22, "{id}");
    let start = row["start_date"].as_str().unwrap();
    assert_eq!(start.len(), 19, "YYYY-MM-DD HH:MM:SS: {start}");
    let r = create_key(&s, Body::Json(json!({"name": "ci", "public_key": ECDSA}))).await;
    assert_eq!(r.ok_rows()[0]["fingerprint"], ECDSA_FP);
    create_key(&s, Body::Json(json!({"name": "ed", "public_key": ED25519}))).await.ok_rows();
    let list = s.get("/v1/auth/ssh_key").await;
    assert_eq!(list.ok_rows().len(), 3);
    assert!(
        list.json.get("total").is_none() && list.json.get("page").is_none(),
        "no total [iwinv live]: {}",
        list.text
    );
    assert_eq!(list.ok_rows()[0]["ssh_key_id"], id.as_str(), "creation order");
    let keys: Vec<_> = list.ok_rows()[0].as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert_eq!(s.get("/v1/auth/ssh_key?name=노트북").await.ok_rows().len(), 1);
    assert_eq!(s.get("/v1/auth/ssh_key?name=CI").await.ok_rows().len(), 1);
    let p2 = s.get("/v1/auth/ssh_key?page_no=2&page_size=2").await;
    assert_eq!((p2.ok_rows().len(), p2.json["page_no"].as_u64()), (1, Some(2)));
    assert!(s.get("/v1/auth/ssh_key?page_no=5").await.ok_rows().is_empty());
    let d = s.call(Method::DELETE, &format!("/v1/auth/ssh_key/{id}"), None).await;
    assert_eq!(d.ok_rows()[0]["ssh_key_id"], id.as_str());
    s.call(Method::DELETE, &format!("/v1/auth/ssh_key/{id}"), None).await.assert_error(404, "NOT_FOUND");
    assert_eq!(s.get("/v1/auth/ssh_key").await.ok_rows().len(), 2);
}

#[tokio::test]
async fn bad_ssh_keys_are_refused() {
    let s = Server::start().await;
    for (key, code) in [
        (RSA1024, "CHECK_PARAM"),
        (DSA, "CHECK_PARAM"),
        ("ssh-ed25519 AAAAnotakey", "CHECK_PARAM"),
        ("hello", "CHECK_PARAM"),
        ("", "REQUIRED_POST_PARAM_MISSING"),
    ] {
        let body = if key.is_empty() { json!({"name": "k"}) } else { json!({"name": "k", "public_key": key}) };
        let r = create_key(&s, Body::Json(body)).await;
        r.assert_error(400, code);
    }
    let r = create_key(&s, Body::Json(json!({"name": "k", "public_key": RSA1024}))).await;
    assert!(r.json["message"].as_str().unwrap().contains("1024"), "{}", r.text);
    create_key(&s, Body::Json(json!({"public_key": ED25519}))).await.assert_error(400, "REQUIRED_POST_PARAM_MISSING");
    create_key(&s, Body::Json(json!({"name": "", "public_key": ED25519}))).await.assert_error(400, "CHECK_LENGTH");
    create_key(&s, Body::Json(json!({"name": "가".repeat(65), "public_key": ED25519})))
        .await
        .assert_error(400, "CHECK_LENGTH");
    create_key(&s, Body::Json(json!({"name": "가".repeat(64), "public_key": ED25519}))).await.ok_rows();
    create_key(&s, Body::Json(json!({"name": "a\u{1}b", "public_key": ED25519})))
        .await
        .assert_error(400, "CHECK_PARAM");
    create_key(&s, Body::Json(json!({"name": ["x"], "public_key": ED25519}))).await.assert_error(400, "CHECK_PARAM");
    assert_eq!(s.get("/v1/auth/ssh_key").await.ok_rows().len(), 1, "nothing half-made");
}

#[tokio::test]
async fn every_body_encoding_is_accepted() {
    let s = Server::start().await;
    let pairs = |name: &str| vec![("name".to_owned(), name.to_owned()), ("public_key".to_owned(), ED25519.to_owned())];
    create_key(&s, Body::Form(pairs("form 키"))).await.ok_rows();
    create_key(&s, Body::Multipart(pairs("multipart 키"))).await.ok_rows();
    let names: Vec<_> = s.get("/v1/auth/ssh_key").await.ok_rows().iter().map(|r| r["name"].clone()).collect();
    assert_eq!(names, [json!("form 키"), json!("multipart 키")]);
}

#[tokio::test]
async fn malformed_and_oversize_bodies() {
    let s = Server::start().await;
    let raw = |ct: &str, bytes: Vec<u8>| Body::Raw { content_type: ct.into(), bytes };
    create_key(&s, raw("application/json", b"{\"name\": ".to_vec())).await.assert_error(400, "CHECK_PARAM");
    create_key(&s, raw("application/json", b"[1,2]".to_vec())).await.assert_error(400, "CHECK_PARAM");
    create_key(&s, raw("application/json", vec![0xff, 0xfe])).await.assert_error(400, "CHECK_PARAM");
    create_key(&s, raw("multipart/form-data", b"--xyz\r\ngarbage".to_vec())).await.assert_error(400, "CHECK_PARAM");
    // Form decoding is strict (spec §1): a stray `%` is a malformed body, not a name.
    let r = create_key(&s, raw("application/x-www-form-urlencoded", b"name=%ZZ".to_vec())).await;
    r.assert_error(400, "CHECK_PARAM");
    let big = format!("{{\"name\":\"k\",\"public_key\":\"{}\"}}", "A".repeat(1024 * 1024 + 10));
    create_key(&s, raw("application/json", big.into_bytes())).await.assert_error(413, "CHECK_PARAM");
    let big_form = format!("name=k&public_key={}", "A".repeat(1024 * 1024 + 10));
    create_key(&s, raw("application/x-www-form-urlencoded", big_form.into_bytes()))
        .await
        .assert_error(413, "CHECK_PARAM");
    assert!(s.get("/v1/auth/ssh_key").await.ok_rows().is_empty());
}

#[tokio::test]
async fn user_scripts() {
    let s = Server::start().await;
    let script = "#!/bin/sh\necho '안녕하세요' > /root/hello\n";
    let r =
        s.call(Method::POST, "/v1/instance/script", Some(Body::Json(json!({"name": "인사", "content": script})))).await;
    let row = r.ok_rows()[0].clone();
    assert_eq!(row["content"], script);
    let id = row["user_script_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("SCRIPT-"));
    let list = s.get("/v1/instance/script").await;
    assert_eq!(list.ok_rows()[0]["name"], "인사");
    let keys: Vec<_> = list.ok_rows()[0].as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys.len(), 4);
    assert!(s.get("/v1/instance/script?name=nothing").await.ok_rows().is_empty());
    let max = "x".repeat(32 * 1024);
    s.call(Method::POST, "/v1/instance/script", Some(Body::Json(json!({"name": "big", "content": max}))))
        .await
        .ok_rows();
    let over = "x".repeat(32 * 1024 + 1);
    s.call(Method::POST, "/v1/instance/script", Some(Body::Json(json!({"name": "big", "content": over}))))
        .await
        .assert_error(400, "CHECK_LENGTH");
    s.call(Method::POST, "/v1/instance/script", Some(Body::Json(json!({"name": "x", "content": ""}))))
        .await
        .assert_error(400, "CHECK_LENGTH");
    s.call(Method::POST, "/v1/instance/script", Some(Body::Json(json!({"name": "x"}))))
        .await
        .assert_error(400, "REQUIRED_POST_PARAM_MISSING");
    s.call(Method::DELETE, &format!("/v1/instance/script/{id}"), None).await.ok_rows();
    s.call(Method::DELETE, &format!("/v1/instance/script/{id}"), None).await.assert_error(404, "NOT_FOUND");
    assert_eq!(s.get("/v1/instance/script").await.ok_rows().len(), 1);
}

#[tokio::test]
async fn accounts_never_see_each_other() {
    let s = Server::start().await;
    let (key, secret) = s.new_account("other", json!({})).await;
    let mine = create_key(&s, Body::Json(json!({"name": "mine", "public_key": ED25519}))).await;
    let key_id = mine.ok_rows()[0]["ssh_key_id"].as_str().unwrap().to_owned();
    let sc =
        s.call(Method::POST, "/v1/instance/script", Some(Body::Json(json!({"name": "mine", "content": "echo"})))).await;
    let script_id = sc.ok_rows()[0]["user_script_id"].as_str().unwrap().to_owned();
    let other = |m: Method, p: String| {
        let (key, secret) = (key.clone(), secret.clone());
        let s = &s;
        async move { s.call_as(&key, &secret, m, &p, None).await }
    };
    assert!(other(Method::GET, "/v1/auth/ssh_key".into()).await.ok_rows().is_empty());
    assert!(other(Method::GET, "/v1/instance/script".into()).await.ok_rows().is_empty());
    other(Method::DELETE, format!("/v1/auth/ssh_key/{key_id}")).await.assert_error(404, "NOT_FOUND");
    other(Method::DELETE, format!("/v1/instance/script/{script_id}")).await.assert_error(404, "NOT_FOUND");
    assert_eq!(s.get("/v1/auth/ssh_key").await.ok_rows().len(), 1);
    assert_eq!(s.get("/v1/instance/script").await.ok_rows().len(), 1);
    // The operator acts on behalf of an account, and sees only that account's objects.
    let r = s.admin(Method::GET, "/admin/v1/accounts/other/ssh-keys", None).await;
    assert!(r.ok_rows().is_empty());
    let r = s
        .admin(Method::POST, "/admin/v1/accounts/other/ssh-keys", Some(json!({"name": "ops", "public_key": ED25519})))
        .await;
    let ops_id = r.ok_rows()[0]["ssh_key_id"].as_str().unwrap().to_owned();
    assert_eq!(other(Method::GET, "/v1/auth/ssh_key".into()).await.ok_rows()[0]["name"], "ops");
    s.admin(Method::POST, "/admin/v1/accounts/other/scripts", Some(json!({"name": "ops", "content": "echo hi"})))
        .await
        .ok_rows();
    assert_eq!(other(Method::GET, "/v1/instance/script".into()).await.ok_rows().len(), 1);
    s.admin(Method::DELETE, &format!("/admin/v1/accounts/dev/ssh-keys/{ops_id}"), None)
        .await
        .assert_error(404, "NOT_FOUND");
    s.admin(Method::DELETE, &format!("/admin/v1/accounts/other/ssh-keys/{ops_id}"), None).await.ok_rows();
    s.admin(Method::GET, "/admin/v1/accounts/nobody/scripts", None).await.assert_error(404, "NOT_FOUND");
}
