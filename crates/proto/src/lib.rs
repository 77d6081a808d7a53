//! The internal gRPC contracts and their generated code.

/// Every service's descriptors, for gRPC reflection.
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

/// Messages every service shares (money).
pub mod common {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("emporium.common.v1");
    }
}

pub mod catalog {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("emporium.catalog.v1");
    }
}

pub mod identity {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("emporium.identity.v1");
    }
}

pub mod inventory {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("emporium.inventory.v1");
    }
}

pub mod basket {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("emporium.basket.v1");
    }
}

pub mod payment {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("emporium.payment.v1");
    }
}
