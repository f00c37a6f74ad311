//! A QEMU host's real networks (`--network namespaces`): made at start from the underlay address,
//! and rewritten where they drifted.

use std::path::PathBuf;

use anyhow::bail;

use crate::Config;

/// The QEMU host's real networks (`--network namespaces`), as `serve --network namespaces`
/// makes them, with the underlay address: a network whose machines name a VNI spans hosts.
/// Tests play the host in a namespace of their own (`OPENWINV_NETWORK_HOST_NETNS`,
/// `OPENWINV_NETWORK_PREFIX`, `OPENWINV_NETWORK_RUN_DIR`, as for `serve`).
pub(crate) async fn real_networks(
    config: &Config,
    underlay: Option<std::net::Ipv4Addr>,
) -> anyhow::Result<openwinv_qemu::Networks> {
    let Some(underlay) = underlay else {
        bail!(
            "--network namespaces needs the host's IPv4 address on the underlay between hosts: \
             pass --underlay (the announced address is not an IPv4 address)"
        )
    };
    let host = openwinv_net::Host {
        netns: std::env::var("OPENWINV_NETWORK_HOST_NETNS").ok().filter(|n| !n.is_empty()),
        prefix: std::env::var("OPENWINV_NETWORK_PREFIX").unwrap_or_else(|_| "owv-".into()),
        uplink: config.uplink.clone(),
        run_dir: std::env::var_os("OPENWINV_NETWORK_RUN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/run/openwinv/networks".into()),
    };
    let nets = openwinv_qemu::Networks::new(host, config.data_dir.join("networks.json")).with_underlay(underlay);
    nets.prepare().await.map_err(|e| anyhow::anyhow!("--network namespaces cannot start: {e}"))?;
    Ok(nets)
}
