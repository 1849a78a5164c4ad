//! The shipped SPIR-V (crates/vulkan/shaders/spv) is what
//! scripts/gen_spirv.sh makes from the GLSL sources today: a shader edited
//! without regenerating fails here. Needs glslc (CI installs it); without it
//! the test fails unless `SPARETIRE_SKIP_VULKAN=1` says explicitly to skip.

use std::path::{Path, PathBuf};
use std::process::Command;

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".spv"))
        .collect();
    names.sort();
    names
}

#[test]
fn spirv_is_current() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let have_glslc = Command::new("glslc").arg("--version").output().is_ok();
    if !have_glslc {
        if std::env::var("SPARETIRE_SKIP_VULKAN").as_deref() == Ok("1") {
            eprintln!("SKIPPED (SPARETIRE_SKIP_VULKAN=1): glslc is not installed");
            return;
        }
        panic!("glslc is not installed (apt-get install glslc), or set SPARETIRE_SKIP_VULKAN=1");
    }
    let out = std::env::temp_dir().join(format!("sparetire-spirv-{}", std::process::id()));
    let status = Command::new("bash")
        .arg(crate_dir.join("../../scripts/gen_spirv.sh"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "scripts/gen_spirv.sh failed");
    let shipped = crate_dir.join("shaders/spv");
    assert_eq!(
        listing(&out),
        listing(&shipped),
        "the shipped .spv files are not the ones gen_spirv.sh makes"
    );
    let mut stale = Vec::new();
    for name in listing(&out) {
        if std::fs::read(out.join(&name)).unwrap() != std::fs::read(shipped.join(&name)).unwrap() {
            stale.push(name);
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        stale.is_empty(),
        "stale SPIR-V {stale:?}: run scripts/gen_spirv.sh and commit crates/vulkan/shaders/spv"
    );
}
