//! The cloud-init NoCloud seed: `meta-data` and `user-data` exactly as `docs/qemu.md` gives
//! them, packed into an ISO 9660 image labelled `cidata`.

use base64::Engine as _;
use openwinv_driver::{MachineNetwork, MachineSpec};
use sha2::{Digest, Sha256};

use crate::iso;

/// Where the guest keeps the user script (and runs it from).
pub const USER_SCRIPT_PATH: &str = "/var/lib/openwinv/user-script";

/// The rendered seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// `<instance_id>-<first 12 hex digits of SHA-256 over user-data>`: changes whenever
    /// `user-data` does, so cloud-init runs again after a rebuild.
    pub instance_id: String,
    pub hostname: String,
    pub meta_data: String,
    pub user_data: String,
    /// cloud-init's `network-config` (version 2) with the machine's static address, when the
    /// machine is on a real network: the same address its DHCP reservation gives, for images
    /// without a DHCP client.
    pub network_config: Option<String>,
}

impl Seed {
    /// Renders the seed of `spec`. Fails, with a sentence for the user, on what cannot be put in
    /// a cloud-config safely (a user name YAML would misread, a key spanning lines).
    pub fn render(spec: &MachineSpec) -> Result<Seed, String> {
        let hostname = hostname(&spec.hostname, &spec.instance_id);
        let user_data = user_data(spec, &hostname)?;
        let digest = hex::encode(Sha256::digest(user_data.as_bytes()));
        let instance_id = format!("{}-{}", spec.instance_id, &digest[..12]);
        let meta_data = format!("instance-id: {instance_id}\nlocal-hostname: {hostname}\n");
        let network_config = spec.network.as_ref().map(|n| network_config(&spec.instance_id, n));
        Ok(Seed { instance_id, hostname, meta_data, user_data, network_config })
    }

    /// The seed as an ISO 9660 image.
    pub fn iso(&self) -> Result<Vec<u8>, String> {
        let mut files = vec![
            iso::File { name: "meta-data", data: self.meta_data.as_bytes() },
            iso::File { name: "user-data", data: self.user_data.as_bytes() },
        ];
        if let Some(n) = &self.network_config {
            files.push(iso::File { name: "network-config", data: n.as_bytes() });
        }
        iso::write("cidata", &files).map_err(|e| format!("the cloud-init seed cannot be written: {e}"))
    }
}

/// Netplan-style version 2: the interface matched by the MAC the driver gives it, the static
/// address, the gateway as default route and DNS server.
fn network_config(instance_id: &str, n: &MachineNetwork) -> String {
    let mac = openwinv_net::Mac::for_instance(instance_id);
    // A network that may span hosts carries frames in VXLAN: the guest's must fit (as DHCP says).
    let mtu = match n.vni {
        Some(_) => format!("    mtu: {}\n", openwinv_net::names::TUNNEL_MTU),
        None => String::new(),
    };
    format!(
        "version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: \"{mac}\"\n    set-name: eth0\n{mtu}    \
         addresses:\n      - {ip}/{prefix}\n    routes:\n      - to: default\n        via: {gw}\n    \
         nameservers:\n      addresses:\n        - {gw}\n",
        ip = n.ip,
        prefix = n.prefix,
        gw = n.gateway
    )
}

fn user_data(spec: &MachineSpec, hostname: &str) -> Result<String, String> {
    let mut y = String::from("#cloud-config\n");
    y.push_str(&format!("hostname: {hostname}\n"));
    y.push_str("ssh_pwauth: true\n");
    if !spec.password.is_empty() {
        check_username(&spec.username)?;
        // JSON's escapes are a subset of YAML's double-quoted ones.
        let password =
            serde_json::to_string(&spec.password).map_err(|e| format!("the password cannot be encoded: {e}"))?;
        y.push_str("chpasswd:\n  expire: false\n  users:\n");
        y.push_str(&format!("    - name: {}\n      password: {password}\n      type: text\n", spec.username));
    }
    if !spec.ssh_keys.is_empty() {
        y.push_str("ssh_authorized_keys:\n");
        for key in &spec.ssh_keys {
            y.push_str(&format!("  - {}\n", ssh_key_line(key)?));
        }
    }
    if let Some(script) = spec.user_script.as_deref().filter(|s| !s.is_empty()) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(script.as_bytes());
        y.push_str("write_files:\n");
        y.push_str(&format!("  - path: {USER_SCRIPT_PATH}\n    permissions: \"0700\"\n    encoding: b64\n"));
        y.push_str(&format!("    content: {b64}\n"));
        y.push_str(&format!("runcmd:\n  - [{USER_SCRIPT_PATH}]\n"));
    }
    Ok(y)
}

/// The user name goes into YAML unquoted: only names a Unix or Windows account can have.
fn check_username(name: &str) -> Result<(), String> {
    let ok = name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "user name {name:?} cannot be seeded: use ASCII letters, digits, '_', '-' and '.', starting with a letter"
        ))
    }
}

/// An OpenSSH public key as one YAML plain scalar. The key type and its base64 body are safe as
/// they are; the comment is free text, and is left out when YAML could misread it (`:` and `#`
/// start mappings and comments). A key that spans lines is refused.
fn ssh_key_line(key: &str) -> Result<String, String> {
    let key = key.trim();
    if key.is_empty() || key.chars().any(char::is_control) {
        return Err("an SSH public key must be one line (type, base64 body, optional comment)".into());
    }
    let mut parts = key.splitn(3, ' ');
    let kind = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default().trim();
    // Key types are like `ssh-ed25519` or `sk-ecdsa-sha2-nistp256@openssh.com`; the body is the
    // base64 of a blob whose first field is a short length, so it starts with `AAAA`.
    let is_type = !kind.is_empty() && kind.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    let is_body = body.starts_with("AAAA") && body.chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c));
    if !is_type || !is_body {
        return Err(format!("{key:?} is not an OpenSSH public key (expected `<type> <base64> [comment]`)"));
    }
    match parts.next().map(str::trim).filter(|c| !c.is_empty()) {
        Some(comment) if !comment.contains([':', '#']) => Ok(format!("{kind} {body} {comment}")),
        _ => Ok(format!("{kind} {body}")),
    }
}

/// The Revised Romanization of the 19 initial consonants of a Hangul syllable.
const INITIALS: [&str; 19] =
    ["g", "kk", "n", "d", "tt", "r", "m", "b", "pp", "s", "ss", "", "j", "jj", "ch", "k", "t", "p", "h"];
/// … of the 21 vowels.
const VOWELS: [&str; 21] = [
    "a", "ae", "ya", "yae", "eo", "e", "yeo", "ye", "o", "wa", "wae", "oe", "yo", "u", "wo", "we", "wi", "yu", "eu",
    "ui", "i",
];
/// … of the 27 final consonants (index 0: none), as they sound at the end of a syllable.
const FINALS: [&str; 28] = [
    "", "k", "k", "k", "n", "n", "n", "t", "l", "k", "m", "l", "l", "l", "p", "l", "m", "p", "p", "t", "t", "ng", "t",
    "t", "k", "t", "p", "t",
];

/// Hangul syllable `c` in Revised Romanization, letter by letter (no sound-change rules).
fn romanize(c: char) -> Option<String> {
    let s = u32::from(c).checked_sub(0xAC00).filter(|s| *s < 11172)? as usize;
    Some(format!("{}{}{}", INITIALS[s / 588], VOWELS[(s % 588) / 28], FINALS[s % 28]))
}

/// The guest's hostname from the instance's name (the rule in `docs/qemu.md`, "Hostnames"):
/// ASCII letters and digits are kept (lower-cased), Hangul syllables are romanized, anything
/// else separates; separators collapse to one `-`, none at either end, at most 63 characters.
/// A name with nothing left becomes the instance id, lower-cased.
pub fn hostname(name: &str, instance_id: &str) -> String {
    let label = |text: &str| {
        let mut out = String::new();
        let mut gap = false;
        for c in text.chars() {
            let piece = if c.is_ascii_alphanumeric() { Some(c.to_ascii_lowercase().to_string()) } else { romanize(c) };
            match piece {
                Some(p) => {
                    if gap && !out.is_empty() {
                        out.push('-');
                    }
                    gap = false;
                    out.push_str(&p);
                }
                None => gap = true,
            }
        }
        out.truncate(63);
        out.trim_end_matches('-').to_owned()
    };
    let h = label(name);
    if h.is_empty() { label(instance_id) } else { h }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MachineSpec {
        MachineSpec {
            instance_id: "INSTANCE-abc".into(),
            hostname: "web-01".into(),
            vcpu: 1,
            memory: 1,
            disk: 10,
            image_id: "IMG".into(),
            username: "root".into(),
            password: "p\"w\\d 한".into(),
            ssh_keys: vec![
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1 me@laptop".into(),
                "ssh-rsa AAAAB3Nza== tricky: comment # here".into(),
            ],
            user_script: Some("#!/bin/sh\necho hi\n".into()),
            boot: None,
            network: None,
        }
    }

    #[test]
    fn user_data_exact() {
        let s = Seed::render(&spec()).expect("render");
        assert_eq!(
            s.user_data,
            "#cloud-config
hostname: web-01
ssh_pwauth: true
chpasswd:
  expire: false
  users:
    - name: root
      password: \"p\\\"w\\\\d 한\"
      type: text
ssh_authorized_keys:
  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1 me@laptop
  - ssh-rsa AAAAB3Nza==
write_files:
  - path: /var/lib/openwinv/user-script
    permissions: \"0700\"
    encoding: b64
    content: IyEvYmluL3NoCmVjaG8gaGkK
runcmd:
  - [/var/lib/openwinv/user-script]
"
        );
        let digest = hex::encode(Sha256::digest(s.user_data.as_bytes()));
        assert_eq!(s.instance_id, format!("INSTANCE-abc-{}", &digest[..12]));
        assert_eq!(s.meta_data, format!("instance-id: {}\nlocal-hostname: web-01\n", s.instance_id));
    }

    #[test]
    fn network_config_carries_the_static_address() {
        assert_eq!(Seed::render(&spec()).unwrap().network_config, None, "no network: no network-config");
        let mut sp = spec();
        sp.network = Some(MachineNetwork {
            account_id: "dev".into(),
            zone_id: "KR1-Z01".into(),
            ip: "10.16.3.7".parse().unwrap(),
            prefix: 16,
            gateway: "10.16.0.1".parse().unwrap(),
            public_ip: None,
            vni: None,
        });
        let s = Seed::render(&sp).unwrap();
        let mac = openwinv_net::Mac::for_instance("INSTANCE-abc");
        assert_eq!(
            s.network_config.as_deref(),
            Some(
                format!(
                    "version: 2
ethernets:
  eth0:
    match:
      macaddress: \"{mac}\"
    set-name: eth0
    addresses:
      - 10.16.3.7/16
    routes:
      - to: default
        via: 10.16.0.1
    nameservers:
      addresses:
        - 10.16.0.1
"
                )
                .as_str()
            )
        );
        // The ISO carries it as a third file.
        let iso = s.iso().unwrap();
        assert!(iso.windows(b"10.16.3.7/16".len()).any(|w| w == b"10.16.3.7/16"));
        // The user-data (and so the seed's instance id) does not depend on the network.
        assert_eq!(s.user_data, Seed::render(&spec()).unwrap().user_data);
        // A network that may span hosts: the guest's MTU fits the tunnel.
        sp.network.as_mut().unwrap().vni = Some(4097);
        let spanning = Seed::render(&sp).unwrap().network_config.unwrap();
        assert!(spanning.contains("    set-name: eth0\n    mtu: 1450\n    addresses:\n"), "{spanning}");
    }

    #[test]
    fn empty_sections_are_left_out() {
        let mut sp = spec();
        sp.ssh_keys.clear();
        sp.user_script = None;
        sp.password.clear();
        let s = Seed::render(&sp).expect("render");
        assert_eq!(s.user_data, "#cloud-config\nhostname: web-01\nssh_pwauth: true\n");
    }

    #[test]
    fn new_password_new_instance_id() {
        let a = Seed::render(&spec()).expect("render");
        let mut sp = spec();
        sp.password = "other".into();
        let b = Seed::render(&sp).expect("render");
        assert_ne!(a.instance_id, b.instance_id);
        assert_eq!(a, Seed::render(&spec()).expect("render"), "same spec, same seed");
    }

    #[test]
    fn refuses_what_yaml_would_misread() {
        let mut sp = spec();
        sp.username = "root: x".into();
        assert!(Seed::render(&sp).unwrap_err().contains("user name"));
        let mut sp = spec();
        sp.ssh_keys = vec!["ssh-ed25519 AAAA\n- evil".into()];
        assert!(Seed::render(&sp).unwrap_err().contains("one line"));
        let mut sp = spec();
        sp.ssh_keys = vec!["not a key: at all".into()];
        assert!(Seed::render(&sp).unwrap_err().contains("not an OpenSSH public key"));
    }

    #[test]
    fn hostnames() {
        let id = "INSTANCE-0Q3fZ1kd8Jx0";
        assert_eq!(hostname("web-01", id), "web-01");
        assert_eq!(hostname("Web Server_01", id), "web-server-01");
        assert_eq!(hostname("  --a..b--  ", id), "a-b");
        assert_eq!(hostname("서울", id), "seoul");
        assert_eq!(hostname("한국", id), "hanguk");
        assert_eq!(hostname("부산 웹서버 1", id), "busan-wepseobeo-1");
        assert_eq!(hostname("웹서버01", id), "wepseobeo01");
        assert_eq!(hostname("DB서버", id), "dbseobeo");
        assert_eq!(hostname("東京", id), "instance-0q3fz1kd8jx0", "nothing left: the instance id");
        assert_eq!(hostname("", id), "instance-0q3fz1kd8jx0");
        assert_eq!(hostname("ㅎㅎ", id), "instance-0q3fz1kd8jx0", "lone jamo are not syllables");
        let long = "가".repeat(40);
        assert_eq!(hostname(&long, id), "ga".repeat(31) + "g");
        let h = hostname(&format!("{}-b", "a".repeat(62)), id);
        assert_eq!(h, "a".repeat(62), "no '-' at the end after cutting to 63");
    }

    #[test]
    fn seed_iso_has_both_files() {
        let s = Seed::render(&spec()).expect("render");
        let p = iso::read(&s.iso().expect("iso")).expect("read");
        assert_eq!(p.label, "cidata");
        let files: Vec<_> =
            p.files.iter().map(|(_, rr, data)| (rr.clone().unwrap_or_default(), data.clone())).collect();
        assert_eq!(
            files,
            [("meta-data".to_owned(), s.meta_data.into_bytes()), ("user-data".to_owned(), s.user_data.into_bytes())]
        );
    }
}
