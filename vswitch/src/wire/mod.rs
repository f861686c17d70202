//! The frame views the switch uses, from the `wire` crate (which `vxlan` and `nat`
//! share), under the paths the switch's modules have always used.

pub use ::wire::{
    ethernet, vlan, vnet, EthernetFrame, MacAddr, MacParseError, Tag, VnetHdr, WireError,
};
