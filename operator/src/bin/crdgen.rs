//! Writes the CRD YAML (crds/ and the chart's crds/) and docs/crd-reference.md.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use rivulet_operator::crdgen::{crd_yaml, crds, reference_markdown};

/// Writes the CRD YAML into crds/ and charts/rivulet-operator/crds/, and
/// docs/crd-reference.md, under the repository root.
#[derive(Parser, Debug)]
#[command(name = "crdgen", version)]
struct Args {
    /// The repository root to write under.
    #[arg(default_value = ".")]
    repo_root: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let root = Args::parse().repo_root;
    for dir in ["crds", "charts/rivulet-operator/crds"] {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (file, crd) in crds() {
            let path = dir.join(file);
            std::fs::write(&path, crd_yaml(&crd)?)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    let doc = root.join("docs/crd-reference.md");
    std::fs::create_dir_all(root.join("docs"))?;
    std::fs::write(&doc, reference_markdown())
        .with_context(|| format!("writing {}", doc.display()))?;
    eprintln!("wrote {}", doc.display());
    Ok(())
}
