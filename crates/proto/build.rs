//! Compiles the .proto files with a pure-Rust compiler: no system protoc.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/emporium/common/v1/money.proto",
        "proto/emporium/catalog/v1/catalog.proto",
        "proto/emporium/identity/v1/identity.proto",
        "proto/emporium/inventory/v1/inventory.proto",
        "proto/emporium/basket/v1/basket.proto",
        "proto/emporium/payment/v1/payment.proto",
        "proto/emporium/recommendation/v1/recommendation.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptors.bin"), descriptors.encode_to_vec())?;
    // Messages that hold a card number, a secret or a token print
    // themselves redacted (src/lib.rs), never through a derived Debug.
    tonic_prost_build::configure()
        .skip_debug([
            "emporium.payment.v1.CreatePaymentRequest",
            "emporium.identity.v1.IssueServiceTokenRequest",
            "emporium.identity.v1.ServiceToken",
            "emporium.identity.v1.ValidateTokenRequest",
        ])
        .compile_fds(descriptors)?;
    Ok(())
}
