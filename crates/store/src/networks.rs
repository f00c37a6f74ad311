//! Private networks across hosts (issue 18, `docs/network.md` "Across hosts"): the VXLAN id of
//! each (account, zone) network, the hosts' underlay addresses, and which hosts hold machines of
//! a network (the peers each of them must send the network's frames to).

use crate::{Result, Store, StoreError};

/// The first VNI handed out (the ones below are left to the operator).
pub const FIRST_VNI: i64 = 4097;
/// The largest VXLAN id (24 bits).
pub const MAX_VNI: i64 = (1 << 24) - 1;

/// A host holding machines of a network.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NetworkHost {
    pub host_id: String,
    pub host_name: String,
    /// `hosts.underlay`, or the announced address when the agent gave none.
    pub underlay: Option<String>,
}

/// The hosts of an (account, zone) network: `$1` account, `$2` zone, `$3` an instance left out.
const NETWORK_HOSTS: &str = "SELECT DISTINCT h.host_id, h.name AS host_name, COALESCE(h.underlay, h.address) AS underlay \
     FROM placements p JOIN instances i ON i.instance_id = p.instance_id \
     JOIN hosts h ON h.host_id = p.host_id \
     WHERE i.account_id = $1 AND i.zone_id = $2 AND h.state <> 'dead' AND p.instance_id <> $3 \
     ORDER BY h.name";

impl Store {
    /// The VNI of the (account, zone) network, handed out on first use (the network's first
    /// address): the next number after the largest one given, unique cloud-wide. Two processes
    /// making networks at once may pick the same number: the unique index refuses one, which
    /// tries again with the next.
    pub async fn network_vni(&self, account_id: &str, zone_id: &str, now: i64) -> Result<u32> {
        for _ in 0..20 {
            if let Some(vni) = self.known_vni(account_id, zone_id).await? {
                return Ok(vni);
            }
            let (max,): (Option<i64>,) = sqlx::query_as("SELECT MAX(vni) FROM networks").fetch_one(self.pool()).await?;
            let next = max.map_or(FIRST_VNI, |m| m + 1);
            if next > MAX_VNI {
                return Err(StoreError::Corrupt(format!("every VXLAN id up to {MAX_VNI} is taken")));
            }
            let r = sqlx::query(
                "INSERT INTO networks (account_id, zone_id, vni, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (account_id, zone_id) DO NOTHING",
            )
            .bind(account_id)
            .bind(zone_id)
            .bind(next)
            .bind(now)
            .execute(self.writer())
            .await
            .map_err(StoreError::from_insert);
            match r {
                Ok(_) | Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Corrupt(format!("could not give the network of {account_id} in {zone_id} a VXLAN id")))
    }

    /// The VNI of the (account, zone) network, if it has one.
    pub async fn known_vni(&self, account_id: &str, zone_id: &str) -> Result<Option<u32>> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT vni FROM networks WHERE account_id = $1 AND zone_id = $2")
            .bind(account_id)
            .bind(zone_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|(v,)| v as u32))
    }

    /// Sets the host's underlay address (`None`: its announced address).
    pub async fn set_host_underlay(&self, host_id: &str, underlay: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE hosts SET underlay = $1 WHERE host_id = $2")
            .bind(underlay)
            .bind(host_id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// The hosts (not declared dead) holding placed instances of `account_id` in `zone_id`,
    /// leaving out `except` (an instance on its way out), by name.
    pub async fn network_hosts(
        &self,
        account_id: &str,
        zone_id: &str,
        except: Option<&str>,
    ) -> Result<Vec<NetworkHost>> {
        Ok(sqlx::query_as(NETWORK_HOSTS)
            .bind(account_id)
            .bind(zone_id)
            .bind(except.unwrap_or(""))
            .fetch_all(self.pool())
            .await?)
    }

    /// The network's VNI, a new peer-list version and its hosts (as [`Store::network_hosts`]),
    /// read in one transaction under the network's row: a list read later has a higher version
    /// and sees every placement committed before it (migration 0030). `None`: no network yet.
    ///
    /// The version is the host's time in milliseconds (`now_ms`), or one more than the last when
    /// that is not behind: it keeps growing across an `admin reset` (which deletes the row) and a
    /// restored snapshot (which puts an older one back), so an agent that applied a list before
    /// either still takes the next one.
    pub async fn network_peers(
        &self,
        account_id: &str,
        zone_id: &str,
        except: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<(u32, i64, Vec<NetworkHost>)>> {
        let mut tx = self.begin_write().await?;
        let row: Option<(i64, i64)> = sqlx::query_as(
            "UPDATE networks SET peers_version = CASE WHEN peers_version >= $3 THEN peers_version + 1 ELSE $3 END \
             WHERE account_id = $1 AND zone_id = $2 RETURNING vni, peers_version",
        )
        .bind(account_id)
        .bind(zone_id)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((vni, version)) = row else { return Ok(None) };
        let hosts = sqlx::query_as(NETWORK_HOSTS)
            .bind(account_id)
            .bind(zone_id)
            .bind(except.unwrap_or(""))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some((u32::try_from(vni).unwrap_or_default(), version, hosts)))
    }

    /// The zones where `account_id` has a network (a VNI).
    pub async fn network_zones(&self, account_id: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT zone_id FROM networks WHERE account_id = $1 ORDER BY zone_id")
                .bind(account_id)
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(|(z,)| z).collect())
    }
}
