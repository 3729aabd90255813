//! Writes the CRD YAML (crds/ and the chart's crds/) and docs/crd-reference.md.
//! Usage: crdgen [REPO_ROOT]   (default: the current directory)

use std::path::PathBuf;

use anyhow::Context;
use rivulet_operator::crdgen::{crd_yaml, crds, reference_markdown};

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
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
