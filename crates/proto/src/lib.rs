//! Wire types and gRPC stubs for every fairchance service, generated from `proto/`.
//!
//! These are transport types, not domain models: each service converts at its gRPC edge.

#![allow(missing_docs, clippy::all, unused_qualifications)]

/// Encoded `FileDescriptorSet` of every fairchance proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/fairchance_descriptor.bin"));

pub mod events {
    pub mod v1 {
        tonic::include_proto!("fairchance.events.v1");
    }
}

pub mod intake {
    pub mod v1 {
        tonic::include_proto!("fairchance.intake.v1");
    }
}

pub mod activation {
    pub mod v1 {
        tonic::include_proto!("fairchance.activation.v1");

        impl ContextPacket {
            /// Blanks the person for an erasure (name, email, phone, what they wrote, their
            /// merged touches' messages); where the lead came from stays, as reports need it.
            /// Every service holding a packet erases it by this one rule.
            pub fn erase_personal_data(&mut self) {
                self.name.clear();
                self.email.clear();
                self.phone.clear();
                self.message.clear();
                self.touches.clear();
            }
        }
    }
}

pub mod followup {
    pub mod v1 {
        tonic::include_proto!("fairchance.followup.v1");
    }
}

pub mod proof {
    pub mod v1 {
        tonic::include_proto!("fairchance.proof.v1");
    }
}

pub mod feedback {
    pub mod v1 {
        tonic::include_proto!("fairchance.feedback.v1");
    }
}
