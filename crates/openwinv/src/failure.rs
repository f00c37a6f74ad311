//! Reporting a failed command on stderr: `error: <ERROR_CODE>: <message>`, then a one-line hint
//! saying what to do about it, and "did you mean" for arguments that matched no id or name.
//! With `--json` (or `--output json`) the same as one JSON object on stderr:
//! `{"error_code": …, "message": …, "hint": …, "suggestions": […]}` (`error_code` is `null` for
//! an error found before any answer). Usage errors never get here (clap reports them, exit
//! status 2).

use std::process::ExitCode;
use std::sync::OnceLock;

use openwinv_sdk::Error;
use openwinv_sdk::wire::ErrorCode;

use crate::operations::OperationFailed;

/// Which API the command spoke to, since the same code means different fixes on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `/v1` with a signed key pair.
    Client,
    /// `/admin/v1` with the operator token.
    Admin,
    /// Nothing remote (`serve`, `openapi`).
    Local,
}

/// Where the operator token of this command came from and where it went, for the message when
/// the server refuses it.
static ADMIN_ORIGIN: OnceLock<String> = OnceLock::new();

/// Records where the operator token came from (see [`ADMIN_ORIGIN`]).
pub fn set_admin_origin(origin: String) {
    let _ = ADMIN_ORIGIN.set(origin);
}

/// Prints the error and its hint; returns the exit status.
pub fn report(err: &anyhow::Error, surface: Surface, json: bool) -> ExitCode {
    if is_broken_pipe(err) {
        return ExitCode::SUCCESS;
    }
    let (error_code, message) = match err.downcast_ref::<Error>() {
        Some(Error::Api { code: Some(ErrorCode::CheckCredential), error_code, message, .. })
            if surface == Surface::Admin =>
        {
            // The CLI always sends a token: a refusal means a wrong one, whatever the server says.
            let origin = ADMIN_ORIGIN.get().map_or("the operator token".into(), String::clone);
            (Some(error_code.clone()), format!("the server refused {origin}: the token is wrong (server: {message})"))
        }
        Some(Error::Api { error_code, message, .. }) => (Some(error_code.clone()), message.clone()),
        _ => (None, format!("{err:#}")),
    };
    let hint = match (err.downcast_ref::<Error>(), err.downcast_ref()) {
        (Some(e), _) => hint(e, surface),
        (None, Some(failed)) => Some(failed_hint(failed)),
        (None, None) => None,
    };
    let suggestions = crate::resolve::suggestions();
    if json {
        let report = serde_json::json!({
            "error_code": error_code,
            "message": message,
            "hint": hint,
            "suggestions": suggestions,
        });
        eprintln!("{}", serde_json::to_string_pretty(&report).unwrap_or_else(|_| report.to_string()));
        return ExitCode::FAILURE;
    }
    match error_code {
        Some(code) => eprintln!("error: {code}: {message}"),
        None => eprintln!("error: {message}"),
    }
    if let Some(hint) = hint {
        eprintln!("hint: {hint}");
    }
    for suggestion in suggestions {
        eprintln!("hint: {suggestion}");
    }
    ExitCode::FAILURE
}

/// What to do about an operation that ended `failed`.
fn failed_hint(failed: &OperationFailed) -> String {
    let op = &failed.0;
    format!(
        "{} is left in status `error` (`openwinv operations show {}` keeps the reason): start it \
         again with `openwinv instances start {0} --wait`, or delete it",
        op.resource_id, op.operation_id
    )
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Whether TLS refused the server's certificate (rustls says so in the error's sources).
fn is_untrusted_certificate(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if err.to_string().contains("invalid peer certificate") {
            return true;
        }
        source = err.source();
    }
    false
}

/// What to do about an SDK error, when there is something to say.
fn hint(err: &Error, surface: Surface) -> Option<String> {
    match err {
        Error::Api { code: Some(code), status, retry_after, .. } => {
            Some(code_hint(*code, *status, *retry_after, surface))
        }
        Error::Api { code: None, .. } => Some("the server used an error code this version does not know".into()),
        Error::Http(e) => {
            let endpoint = e.url().map_or_else(|| "the endpoint".into(), |u| u.origin().ascii_serialization());
            if is_untrusted_certificate(e) {
                Some(format!(
                    "{endpoint} presented a certificate this machine does not trust: pass --ca-file FILE or set \
                     IWINV_CA_FILE (`openwinv tls ca` prints the CA of a local `openwinv serve --tls`)"
                ))
            } else if e.is_connect() {
                let var = match surface {
                    Surface::Admin => "OPENWINV_ADMIN_ENDPOINT",
                    _ => "IWINV_ENDPOINT",
                };
                Some(format!("is `openwinv serve` running at {endpoint}? (set {var} to reach another)"))
            } else if e.is_timeout() {
                Some(format!("{endpoint} did not answer in time; retry later"))
            } else {
                None
            }
        }
        Error::Decode { .. } => Some(
            "the endpoint did not answer like the iwinv API: check that it points at an openwinv \
             server or https://api-kr.iwinv.kr"
                .into(),
        ),
        Error::Config(_) => None,
        Error::Timeout { operation_id, .. } => Some(format!(
            "the operation goes on: follow it with `openwinv operations wait {operation_id}`, or \
             wait longer with --timeout SECS"
        )),
    }
}

/// One line per catalog code. The match has no catch-all so a new code must get its hint here.
fn code_hint(code: ErrorCode, status: u16, retry_after: Option<u64>, surface: Surface) -> String {
    use ErrorCode::*;
    let admin = surface == Surface::Admin;
    let text = match code {
        NotFound if admin => {
            "no such account, key, fault rule or running operation: list them with `openwinv \
             admin … list`"
        }
        NotFound => {
            "no such id for this account (or no such route): list the resources to check (an \
             instance is gone once its delete has finished)"
        }
        CidrNotValid => "a CIDR in the request is malformed: write it as a.b.c.d/n",
        CidrNotRegistered => "that CIDR is not registered for this account",
        Ipv6NotSupported => "firewall rules take IPv4 addresses and CIDRs only",
        CheckRequestIp => "the server refused this machine's address: check the key's allowlist",
        CheckCredential if admin => {
            "use that server's operator token: the admin-token file in its data directory (set \
             OPENWINV_DATA_DIR to that directory, or OPENWINV_ADMIN_TOKEN and \
             OPENWINV_ADMIN_ENDPOINT)"
        }
        CheckCredential => {
            "set IWINV_ACCESS_KEY/IWINV_SECRET_KEY (or --profile FILE) or check that the key is \
             enabled (`openwinv admin keys list`)"
        }
        CheckSignature => {
            "the request timestamp is more than 300 s from the server's clock, or a signature \
             header is missing: check this machine's clock (a server clock moved with `openwinv \
             admin clock` needs --time-offset SECS)"
        }
        InvalidSignature => {
            "the secret key does not match the access key: check IWINV_SECRET_KEY or the \
             credentials file"
        }
        CheckIp => {
            "this machine's address is not in the access key's allowlist: `openwinv admin keys \
             update KEY --allow CIDR` (or --clear-allow)"
        }
        RequiredGetParamMissing => "a required query parameter is missing: the message names it",
        RequiredPostParamMissing => "a required field is missing: the message names it",
        DevCheckReturn => {
            "the server or its backend failed, or the zone is closed for creation: check \
             `openwinv zones`, the server log, and retry later"
        }
        UnavailableFlavor => {
            "the flavor is not offered in that zone or cannot be ordered, or (resize) it is the \
             instance's flavor already or has a smaller disk: see `openwinv flavors --zone ZONE`"
        }
        CheckParam if status == 409 && admin => {
            "fault rules, stepping and the clock need the simulated driver (`openwinv serve \
             --driver sim`)"
        }
        CheckParam if status == 409 => {
            "the instance's status does not allow this (e.g. start when active; see `openwinv \
             instances show ID`), or the Idempotency-Key was used for another request or is \
             still in progress"
        }
        CheckParam => "a value is malformed or out of range: the message names the field",
        CheckParamEnum => "a value is not one of the accepted choices: the message lists them",
        UnavailableCombination => {
            "the image does not run on that flavor or is not offered in that zone: see `openwinv \
             flavors --image IMAGE --zone ZONE`"
        }
        CheckLength => "a text value is too short or too long: the message gives the bounds",
        UnavailableSshKey => {
            "the SSH key is unknown to this account or cannot be used with a Windows image: see \
             `openwinv ssh-keys`"
        }
        DeletedOrWorkingInstance => {
            "the instance is busy (pending or work: being created, changed or deleted): wait for \
             its operation to end (`openwinv instances show ID` shows the status), then retry, \
             or pass --wait to the command that started it"
        }
        EmptySet => "no bill matches the filter: widen it",
        InUse => "the resource is still attached: detach it first",
        IdInvalid => {
            "an id in the request does not exist: list zones, flavors, images or scripts to find \
             a valid one"
        }
        LimitExceeded if status == 429 => {
            return match retry_after {
                Some(s) => format!(
                    "the access key's rate limit is used up: retry in {s} s (Retry-After), or \
                     raise it with `openwinv admin keys update KEY --rate-limit N`"
                ),
                None => "the access key's rate limit is used up: wait a minute, or raise it with \
                         `openwinv admin keys update KEY --rate-limit N`"
                    .into(),
            };
        }
        LimitExceeded => {
            "an account quota (instances, vCPUs, storage) or a per-instance limit is reached: \
             delete something first"
        }
        CheckConsole => {
            "the remote console needs an active instance: start it first (`openwinv instances \
             start ID --wait`)"
        }
    };
    text.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_hint_on_both_surfaces() {
        for &code in ErrorCode::ALL {
            for surface in [Surface::Client, Surface::Admin] {
                let h = code_hint(code, code.http_status(), None, surface);
                assert!(!h.is_empty() && !h.contains('\n'), "{code}: {h}");
            }
        }
    }

    #[test]
    fn rate_limit_hint_names_the_wait() {
        let h = code_hint(ErrorCode::LimitExceeded, 429, Some(12), Surface::Client);
        assert!(h.contains("12 s"), "{h}");
        let h = code_hint(ErrorCode::LimitExceeded, 403, None, Surface::Client);
        assert!(h.contains("quota"), "{h}");
    }

    #[test]
    fn a_conflict_names_the_state_or_the_driver() {
        let h = code_hint(ErrorCode::CheckParam, 409, None, Surface::Client);
        assert!(h.contains("status"), "{h}");
        let h = code_hint(ErrorCode::CheckParam, 409, None, Surface::Admin);
        assert!(h.contains("simulated driver"), "{h}");
        let h = code_hint(ErrorCode::CheckParam, 400, None, Surface::Client);
        assert!(h.contains("malformed"), "{h}");
    }

    #[test]
    fn waiting_failures_say_what_goes_on() {
        let timeout = Error::Timeout { operation_id: "OP-1".into(), waited: std::time::Duration::from_secs(3) };
        let h = hint(&timeout, Surface::Client).unwrap();
        assert!(h.contains("openwinv operations wait OP-1"), "{h}");
        let failed = OperationFailed(openwinv_sdk::wire::operations::Operation {
            operation_id: "OP-2".into(),
            kind: "instance.start".into(),
            resource_id: "INSTANCE-1".into(),
            status: "failed".into(),
            error: Some("boom".into()),
            created_at: String::new(),
            finished_at: None,
        });
        let h = failed_hint(&failed);
        assert!(h.contains("INSTANCE-1") && h.contains("OP-2"), "{h}");
    }

    #[test]
    fn admin_credential_hint_names_the_token() {
        let h = code_hint(ErrorCode::CheckCredential, 401, None, Surface::Admin);
        assert!(h.contains("OPENWINV_ADMIN_TOKEN"), "{h}");
    }
}
