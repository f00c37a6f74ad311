//! The machine spec the instance sagas hand the driver.

use std::path::Path;
use std::sync::Arc;

use openwinv_driver::{BootImage, Pacing, SimDriver};
use openwinv_engine::Clock;
use openwinv_store::crypto::Sealer;
use openwinv_store::instances::Power;
use openwinv_store::{InstanceRecord, ScriptRecord, Store};
use openwinv_wire::images::ImageBoot;

use super::*;
use crate::catalog::{CatalogCache, CatalogFile, DEFAULT_CATALOG};
use crate::images::ImageStore;

#[tokio::test]
async fn spec_carries_the_image_files_as_absolute_paths_and_the_user_script() {
    let db = std::env::temp_dir().join(format!("owt_spec_{}.db", rand::random::<u64>()));
    let store = Store::open(&format!("sqlite://{}?mode=rwc", db.display())).await.unwrap();
    let mut catalog = CatalogFile::parse(DEFAULT_CATALOG).unwrap();
    catalog.images[0].boot = Some(ImageBoot {
        kind: "kernel".into(),
        kernel: Some("vmlinuz".into()),
        initrd: Some("initrd.img".into()),
        cmdline: Some("console=ttyS0".into()),
        root_disk: Some("root.raw".into()),
        ..ImageBoot::default()
    });
    let (with_boot, without_boot) = (catalog.images[0].id.clone(), catalog.images[1].id.clone());
    store.replace_catalog(&catalog.to_entries()).await.unwrap();
    let account = store.create_account("spec", 0).await.unwrap();
    let script = "#!/bin/sh\necho hello\n";
    let record = ScriptRecord {
        user_script_id: "SCRIPT-spec".into(),
        account_id: account.account_id.clone(),
        name: "hello".into(),
        content: script.into(),
        created_at: 0,
    };
    store.insert_named(&record).await.unwrap();
    let sealer = Sealer::from_hex(&Sealer::generate_hex()).unwrap();
    let deps = Arc::new(Deps {
        store: store.clone(),
        driver: Arc::new(SimDriver::new(Pacing::Immediate)),
        catalog: Arc::new(CatalogCache::load(&store).await.unwrap()),
        // A relative data directory, as `--data-dir ./data` gives: drivers still get absolute paths.
        images: ImageStore::new(Path::new("spec-data")),
        sealer: sealer.clone(),
        clock: Clock::new(true),
        hosts_mode: false,
    });
    let inst = InstanceRecord {
        instance_id: "INSTANCE-spec".into(),
        account_id: account.account_id.clone(),
        name: "web".into(),
        description: None,
        status: InstanceStatus::Active,
        power: Power::On,
        zone_id: "KR1-Z01".into(),
        flavor_id: catalog.flavors[0].id.clone(),
        image_id: with_boot.clone(),
        username: "root".into(),
        password_sealed: sealer.seal("pw"),
        user_script_id: Some(record.user_script_id.clone()),
        ssh_keys: Vec::new(),
        attach_public_ip: false,
        public_ip: None,
        private_ip: None,
        public_ip_num: None,
        private_ip_num: None,
        operation_id: None,
        error_reason: None,
        generation: 0,
        created_at: 0,
        stop_date: None,
        vcpu: 1,
    };
    let made = spec(&deps, &inst, Changes::default()).await.unwrap();
    let dir = std::env::current_dir().unwrap().join("spec-data/images").join(&with_boot);
    assert_eq!(
        made.boot,
        Some(BootImage::Kernel {
            kernel: dir.join("vmlinuz"),
            initrd: Some(dir.join("initrd.img")),
            cmdline: "console=ttyS0".into(),
            root_disk: Some(dir.join("root.raw")),
        })
    );
    assert!(dir.is_absolute());
    assert_eq!(made.user_script.as_deref(), Some(script));

    // A rebuild onto an image without files: nothing to boot (a real driver refuses).
    let rebuild = Changes { image_id: Some(&without_boot), ..Changes::default() };
    let rebuilt = spec(&deps, &inst, rebuild).await.unwrap();
    assert_eq!((rebuilt.image_id.as_str(), rebuilt.boot), (without_boot.as_str(), None));

    // A script deleted since: none runs.
    store.delete_named::<ScriptRecord>(&account.account_id, &record.user_script_id).await.unwrap();
    assert_eq!(spec(&deps, &inst, rebuild).await.unwrap().user_script, None);
    let no_script = InstanceRecord { user_script_id: None, ..inst };
    assert_eq!(spec(&deps, &no_script, rebuild).await.unwrap().user_script, None);

    store.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}
