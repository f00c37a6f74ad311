//! The QEMU compute driver: every instance is a QEMU virtual machine on this host.
//!
//! Layout of the data directory, the seed format and the hostname rule are in `docs/qemu.md`.
//! The modules below are usable on their own: [`cmdline`] and [`seed`] are pure (and tested
//! byte for byte), [`qmp`] is a small QMP client, [`accel`] picks KVM or TCG, and [`driver`]
//! puts them together behind [`openwinv_driver::ComputeDriver`] and
//! [`openwinv_driver::ConsoleBroker`]; [`img`] reads `qemu-img info`.

pub mod accel;
pub mod cmdline;
pub mod driver;
pub mod img;
pub mod iso;
pub mod networks;
pub mod paths;
pub mod qmp;
pub mod seed;

pub use accel::{Accel, Accelerator};
pub use driver::{QemuDriver, Timeouts};
pub use networks::Networks;
