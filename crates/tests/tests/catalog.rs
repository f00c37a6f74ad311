//! Catalog endpoints (spec §6) and pagination (spec §4) through the real binary.

use openwinv_tests::Server;
use serde_json::Value;

fn ids(rows: &[Value], key: &str) -> Vec<String> {
    rows.iter().map(|r| r[key].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn zones_are_listed_unpaginated() {
    let s = Server::start().await;
    let r = s.get("/v1/zones").await;
    let rows = r.ok_rows();
    assert_eq!(r.json["count"], 3);
    assert!(r.json.get("page_no").is_none());
    assert_eq!(rows[0], serde_json::json!({"zone_id": "KR1-Z01", "zone_name": "서울 1", "status": "on"}));
    assert_eq!(rows[1]["zone_name"], "서울 2");
    assert_eq!(rows[2]["status"], "off");
    assert_eq!(r.json["message"], "");
}

#[tokio::test]
async fn flavor_rows_have_the_iwinv_shape_and_prices() {
    let s = Server::start().await;
    let r = s.get("/v1/flavors/ss1.c1m1").await;
    let f = &r.ok_rows()[0];
    assert_eq!(r.json["count"], 1);
    assert_eq!(f["flavor_id"], "ss1.c1m1");
    assert_eq!(f["provide"], "Y");
    assert_eq!(
        f["spec"],
        serde_json::json!({"type":"standard","vcpu":1,"memory":1,"disk":25,"network":100,"gpu":null})
    );
    // `KRW` is a plain integer without VAT [iwinv live]; `vat` and `total` beside it [ext].
    assert_eq!(f["price"]["full"], serde_json::json!({"type":"month","KRW":9900,"vat":990,"total":10890}));
    assert_eq!(f["price"]["partial"]["type"], "hour");
    let hour = &f["price"]["partial"];
    let krw = hour["KRW"].as_i64().expect("KRW is an integer");
    assert_eq!((hour["vat"].as_i64(), hour["total"].as_i64()), (Some(krw * 10 / 100), Some(krw + krw * 10 / 100)));
    assert!(f["supporting_images"].as_array().unwrap().iter().any(|i| i == "IMG-ubuntu-2404"));
    // 1 GB of memory cannot run the Windows images (2 GB minimum).
    assert!(!f["supporting_images"].as_array().unwrap().iter().any(|i| i == "IMG-win-2022"));
    // Unknown flavor: an empty list, not an error.
    let r = s.get("/v1/flavors/nope.c1").await;
    assert!(r.ok_rows().is_empty());
    assert_eq!(r.json["count"], 0);
}

#[tokio::test]
async fn flavor_list_paginates_with_total() {
    let s = Server::start().await;
    let all = s.get("/v1/flavors?page_size=100").await;
    let total = all.json["total"].as_u64().unwrap();
    assert!(total >= 12);
    assert_eq!(all.ok_rows().len() as u64, total);
    let p1 = s.get("/v1/flavors").await;
    assert_eq!((p1.json["page_no"].clone(), p1.json["page_size"].clone()), (1.into(), 10.into()));
    assert_eq!(p1.json["count"], 10);
    assert_eq!(p1.json["total"], total);
    let p2 = s.get("/v1/flavors?page_no=2&page_size=10").await;
    assert_eq!(p2.ok_rows().len() as u64, total - 10);
    let mut joined = ids(p1.ok_rows(), "flavor_id");
    joined.extend(ids(p2.ok_rows(), "flavor_id"));
    assert_eq!(joined, ids(all.ok_rows(), "flavor_id"), "stable order across pages");
    let past = s.get("/v1/flavors?page_no=99").await;
    assert!(past.ok_rows().is_empty());
    assert_eq!(past.json["count"], 0);
    assert_eq!(past.json["total"], total);
    for bad in ["page_no=0", "page_no=abc", "page_size=0", "page_size=101", "page_size=-1", "page_no=1.5"] {
        s.get(&format!("/v1/flavors?{bad}")).await.assert_error(400, "CHECK_PARAM");
    }
}

#[tokio::test]
async fn flavor_filters() {
    let s = Server::start().await;
    let rows = |q: &'static str| {
        let s = &s;
        async move { s.get(&format!("/v1/flavors?page_size=100&{q}")).await.ok_rows().clone() }
    };
    let gpu = rows("type=gpu").await;
    assert!(!gpu.is_empty() && gpu.iter().all(|f| f["spec"]["type"] == "gpu"));
    let two = rows("type=cpu,memory").await;
    assert!(two.iter().any(|f| f["spec"]["type"] == "cpu") && two.iter().any(|f| f["spec"]["type"] == "memory"));
    assert!(two.iter().all(|f| f["spec"]["type"] == "cpu" || f["spec"]["type"] == "memory"));
    let z2 = rows("zone_id=KR1-Z02").await;
    assert!(z2.iter().all(|f| f["zone"].as_array().unwrap().iter().any(|z| z == "KR1-Z02")));
    assert!(!z2.iter().any(|f| f["spec"]["type"] == "gpu"), "GPU flavors are only in KR1-Z01");
    let mid = rows("min_vcpu=2&max_vcpu=4").await;
    assert!(!mid.is_empty());
    assert!(mid.iter().all(|f| (2..=4).contains(&f["spec"]["vcpu"].as_u64().unwrap())));
    let mem = rows("min_memory=16&max_memory=16").await;
    assert!(mem.iter().all(|f| f["spec"]["memory"] == 16) && !mem.is_empty());
    let disk = rows("max_disk=25").await;
    assert!(disk.iter().all(|f| f["spec"]["disk"].as_u64().unwrap() <= 25) && !disk.is_empty());
    let g2 = rows("min_gpu=2").await;
    assert_eq!(ids(&g2, "flavor_id"), ["sg1.c16m64.t4x2"]);
    let nogpu = rows("max_gpu=0").await;
    assert!(nogpu.iter().all(|f| f["spec"]["gpu"].is_null()));
    let win = rows("image_id=IMG-win-2022").await;
    assert!(win.iter().all(|f| f["spec"]["memory"].as_u64().unwrap() >= 2));
    assert!(!win.is_empty());
    let wintype = rows("image_type=os_windows").await;
    assert_eq!(ids(&wintype, "flavor_id"), ids(&win, "flavor_id"));
    assert!(rows("min_vcpu=5&max_vcpu=4").await.is_empty());
    // Bad values.
    s.get("/v1/flavors?zone_id=KR9-Z99").await.assert_error(400, "ID_INVALID");
    s.get("/v1/flavors?image_id=IMG-nope").await.assert_error(400, "ID_INVALID");
    s.get("/v1/flavors?type=quantum").await.assert_error(400, "CHECK_PARAM_ENUM");
    s.get("/v1/flavors?type=GPU").await.assert_error(400, "CHECK_PARAM_ENUM");
    s.get("/v1/flavors?image_type=os_plan9").await.assert_error(400, "CHECK_PARAM_ENUM");
    s.get("/v1/flavors?min_vcpu=two").await.assert_error(400, "CHECK_PARAM");
    s.get("/v1/flavors?max_memory=-1").await.assert_error(400, "CHECK_PARAM");
}

#[tokio::test]
async fn flavor_fields_select_keys() {
    let s = Server::start().await;
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let r = s.get("/v1/flavors?fields=1").await;
    assert!(r.ok_rows().iter().all(|f| keys(f) == ["flavor_id"]));
    let r = s.get("/v1/flavors?fields=3").await;
    assert_eq!(keys(&r.ok_rows()[0]), ["flavor_id", "name"]);
    let r = s.get("/v1/flavors/ss1.c1m1?fields=144").await;
    assert_eq!(keys(&r.ok_rows()[0]), ["price", "spec"]);
    let r = s.get("/v1/flavors?fields=255").await;
    assert_eq!(
        keys(&r.ok_rows()[0]),
        ["flavor_id", "name", "price", "provide", "spec", "status", "supporting_images", "zone"]
    );
    assert_eq!(keys(&s.get("/v1/flavors").await.ok_rows()[0]).len(), 8, "default is every field");
    s.get("/v1/flavors?fields=abc").await.assert_error(400, "CHECK_PARAM");
    s.get("/v1/flavors?fields=0").await.assert_error(400, "CHECK_PARAM");
    s.get("/v1/flavors/ss1.c1m1?fields=x").await.assert_error(400, "CHECK_PARAM");
}

#[tokio::test]
async fn images_and_their_filters() {
    let s = Server::start().await;
    let all = s.get("/v1/images?page_size=100").await;
    let rows = all.ok_rows();
    assert!(rows.len() >= 10);
    let i = &rows[0];
    for key in [
        "image_id",
        "name",
        "visibility",
        "os",
        "image_type",
        "zone",
        "tags",
        "status",
        "protected",
        "description",
        "min_disk",
        "min_ram",
        "file_size",
        "created_at",
        "updated_at",
    ] {
        assert!(i.get(key).is_some(), "image row lacks {key}: {i}");
    }
    for key in ["type", "name", "status", "content", "os_type", "version", "oid"] {
        assert!(i["os"].get(key).is_some(), "os lacks {key}");
    }
    let win = s.get("/v1/images?os=windows,windows_core&page_size=100").await;
    assert!(win.ok_rows().iter().all(|i| i["os"]["type"] == "windows" || i["os"]["type"] == "windows_core"));
    assert_eq!(win.ok_rows().len(), 3);
    let ubuntu = s.get("/v1/images?name=UBUNTU").await;
    assert_eq!(ubuntu.ok_rows().len(), 2, "name is a case-insensitive substring");
    let linux = s.get("/v1/images?type=os_linux&page_size=100").await;
    assert!(linux.ok_rows().iter().all(|i| i["image_type"] == "os_linux"));
    assert_eq!(s.get("/v1/images?visibility=private").await.ok_rows().len(), 0);
    assert_eq!(s.get("/v1/images?zone_id=KR1-Z01&page_size=100").await.ok_rows().len(), rows.len());
    let p = s.get("/v1/images?page_no=2&page_size=4").await;
    assert_eq!(p.ok_rows()[0]["image_id"], rows[4]["image_id"]);
    assert_eq!(p.json["total"], rows.len());
    s.get("/v1/images?os=plan9").await.assert_error(400, "CHECK_PARAM_ENUM");
    s.get("/v1/images?os=Windows").await.assert_error(400, "CHECK_PARAM_ENUM");
    s.get("/v1/images?visibility=shared").await.assert_error(400, "CHECK_PARAM_ENUM");
    s.get("/v1/images?zone_id=nowhere").await.assert_error(400, "ID_INVALID");
    s.get("/v1/images?page_size=x").await.assert_error(400, "CHECK_PARAM");
    let one = s.get("/v1/images/IMG-ubuntu-2404").await;
    assert_eq!(one.ok_rows()[0]["os"]["version"], "24.04");
    s.get("/v1/images/IMG-nope").await.assert_error(400, "ID_INVALID");
}

#[tokio::test]
async fn block_storage_types() {
    let s = Server::start().await;
    let r = s.get("/v1/block-storages/types").await;
    let rows = r.ok_rows();
    assert!(r.json.get("page_no").is_none());
    assert_eq!(rows[0]["type"], "ssd");
    assert_eq!((rows[0]["min"].as_u64(), rows[0]["max"].as_u64()), (Some(10), Some(2000)));
    assert_eq!((rows[1]["type"].as_str(), rows[1]["max"].as_u64()), (Some("sata"), Some(20000)));
    assert!(rows[0]["zones"].is_null());
    assert!(rows[0]["price"]["KRW"]["price"].as_i64().unwrap() > 0);
    let r = s.get("/v1/block-storages/types?type=sata").await;
    assert_eq!(r.ok_rows().len(), 1);
    s.get("/v1/block-storages/types?type=nvme").await.assert_error(400, "CHECK_PARAM");
    s.get("/v1/block-storages/types?type=SSD").await.assert_error(400, "CHECK_PARAM");
}

#[tokio::test]
async fn the_operator_can_replace_the_catalog() {
    let s = Server::start().await;
    let exported = s.admin(reqwest::Method::GET, "/admin/v1/catalog", None).await;
    assert_eq!(exported.status, 200);
    assert!(exported.text.contains("KR1-Z01"));
    let small = r#"
[[zones]]
id = "LAB-1"
name = "실험실"

[[flavors]]
id = "tiny.1"
name = "Tiny"
type = "standard"
vcpu = 1
memory = 1
disk = 10
network = 10
price_month = 1000
price_hour = 2
zones = ["LAB-1"]

[[images]]
id = "IMG-alpine"
name = "Alpine 3.20"
family = "debian"
os_name = "Alpine"
version = "3.20"
os_type = "linux"
image_type = "os_linux"
zones = ["LAB-1"]
min_disk = 1
min_ram = 128
created_at = "2024-05-22 00:00:00"

[[block_storage_types]]
type = "hdd"
min = 1
max = 100
price_gb_month = 10
"#;
    let headers = vec![("Authorization".to_owned(), format!("Bearer {}", s.admin_token))];
    let put = |text: &str| {
        s.raw(
            reqwest::Method::PUT,
            "/admin/v1/catalog",
            &headers,
            Some(openwinv_tests::Body::Raw {
                content_type: "application/toml".into(),
                bytes: text.as_bytes().to_vec(),
            }),
        )
    };
    put("[[zones]]\nid = 3").await.assert_error(400, "CHECK_PARAM");
    let bad_ref = small.replace("zones = [\"LAB-1\"]\n\n[[images]]", "zones = [\"LAB-9\"]\n\n[[images]]");
    let r = put(&bad_ref).await;
    r.assert_error(400, "CHECK_PARAM");
    assert!(r.json["message"].as_str().unwrap().contains("LAB-9"));
    assert_eq!(s.get("/v1/zones").await.ok_rows().len(), 3, "a refused import changes nothing");
    put(small).await.ok_rows();
    assert_eq!(s.get("/v1/zones").await.ok_rows()[0]["zone_name"], "실험실");
    assert_eq!(s.get("/v1/flavors").await.ok_rows()[0]["supporting_images"], serde_json::json!(["IMG-alpine"]));
    assert_eq!(s.get("/v1/block-storages/types").await.ok_rows()[0]["type"], "hdd");
    // Re-importing the export restores the original.
    put(&exported.text).await.ok_rows();
    assert_eq!(s.get("/v1/zones").await.ok_rows().len(), 3);
}
