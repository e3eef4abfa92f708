//! The workspace generator: a Go module of N packages with M files each,
//! deterministic from a seed, plus the editor probe positions in it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use remote_gopls_e2e::fixture::position_at;

use crate::gocode::{self, PackagePlan, ProbeKind};
use crate::rng::SplitMix64;

/// Module path of every generated workspace; `.example` is reserved, so it
/// never resolves to a real module.
pub const MODULE_PATH: &str = "bench.example/gen";
/// Seed used unless `--seed` sets another.
pub const DEFAULT_SEED: u64 = 20_260_101;
/// How far back (in package indices) a package may import from. A window
/// keeps the import graph deep instead of everything importing package 0.
const IMPORT_WINDOW: usize = 40;
/// Most packages one package imports.
const MAX_IMPORTS: usize = 3;

const PACKAGE_WORDS: [&str; 24] = [
    "ledger",
    "billing",
    "catalog",
    "routing",
    "session",
    "storage",
    "metrics",
    "search",
    "invoice",
    "profile",
    "payment",
    "audit",
    "inventory",
    "shipping",
    "pricing",
    "notify",
    "report",
    "tenant",
    "policy",
    "schedule",
    "quota",
    "review",
    "export",
    "gateway",
];
const TYPE_WORDS: [&str; 24] = [
    "Account",
    "Order",
    "Invoice",
    "Route",
    "Entry",
    "Ticket",
    "Product",
    "Shipment",
    "Customer",
    "Budget",
    "Payment",
    "Report",
    "Schedule",
    "Token",
    "Policy",
    "Quota",
    "Review",
    "Tenant",
    "Vendor",
    "Warehouse",
    "Batch",
    "Coupon",
    "Ledger",
    "Segment",
];

/// A workspace size preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Size {
    pub name: &'static str,
    pub packages: usize,
    pub files_per_package: usize,
}

impl Size {
    pub const SMOKE: Size = Size {
        name: "smoke",
        packages: 6,
        files_per_package: 2,
    };
    pub const SMALL: Size = Size {
        name: "small",
        packages: 40,
        files_per_package: 3,
    };
    pub const MEDIUM: Size = Size {
        name: "medium",
        packages: 500,
        files_per_package: 3,
    };
    pub const LARGE: Size = Size {
        name: "large",
        packages: 800,
        files_per_package: 4,
    };
    pub const ALL: [Size; 4] = [Size::SMOKE, Size::SMALL, Size::MEDIUM, Size::LARGE];

    pub fn by_name(name: &str) -> Option<Size> {
        Size::ALL.into_iter().find(|s| s.name == name)
    }
}

/// A position the editor script sends a request at.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Probe {
    /// Path relative to the module root.
    pub file: String,
    pub kind: ProbeKind,
    pub line: u32,
    pub character: u32,
}

/// A generated module, in memory until written.
#[derive(Debug)]
pub struct Module {
    pub size: Size,
    pub seed: u64,
    /// Relative path and text of every file, `go.mod` first.
    pub files: Vec<(String, String)>,
    pub probes: Vec<Probe>,
    pub plan: Vec<PackagePlan>,
}

/// Counts that describe a generated module.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModuleStats {
    pub size: String,
    pub seed: u64,
    pub packages: usize,
    /// `.go` files, test files included.
    pub go_files: usize,
    pub lines: usize,
    pub bytes: usize,
}

impl Module {
    /// Generates the module for `size` from `seed`; the same inputs give
    /// byte-identical output.
    pub fn generate(size: Size, seed: u64) -> Module {
        let mut rng = SplitMix64::new(seed);
        let plan = plan_packages(size, &mut rng);

        let mut files = vec![(
            "go.mod".to_owned(),
            format!("module {MODULE_PATH}\n\ngo 1.22\n"),
        )];
        let mut probes = Vec::new();
        for (index, package) in plan.iter().enumerate() {
            let dir = format!("pkg/{}", package.name);
            for (file, ty) in package.types.iter().enumerate() {
                let emitted = gocode::emit_file(&plan, MODULE_PATH, index, file, &mut rng);
                let path = format!("{dir}/{}.go", ty.to_lowercase());
                for (kind, offset) in &emitted.probes {
                    let (line, character) = position_at(&emitted.text, *offset);
                    probes.push(Probe {
                        file: path.clone(),
                        kind: *kind,
                        line,
                        character,
                    });
                }
                files.push((path, emitted.text));
            }
            files.push((
                format!("{dir}/{}_test.go", package.name),
                gocode::emit_test(package),
            ));
        }
        Module {
            size,
            seed,
            files,
            probes,
            plan,
        }
    }

    pub fn stats(&self) -> ModuleStats {
        let go = || self.files.iter().filter(|(path, _)| path.ends_with(".go"));
        ModuleStats {
            size: self.size.name.to_owned(),
            seed: self.seed,
            packages: self.plan.len(),
            go_files: go().count(),
            lines: go().map(|(_, text)| text.lines().count()).sum(),
            bytes: go().map(|(_, text)| text.len()).sum(),
        }
    }

    /// Writes the module under `root`, which must not exist yet or be empty.
    pub fn write(&self, root: &Path) -> anyhow::Result<()> {
        for (path, text) in &self.files {
            let target = root.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("failed to create {}", parent.display()))?;
            }
            std::fs::write(&target, text)
                .with_context(|| format!("failed to write {}", target.display()))?;
        }
        Ok(())
    }

    /// Returns the text of a generated file.
    pub fn text(&self, path: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, t)| t.as_str())
    }

    /// `count` non-test files spread evenly over the packages that import
    /// something, so every one has cross-package probes.
    pub fn spread_files(&self, count: usize) -> Vec<String> {
        let candidates: Vec<&str> = self
            .files
            .iter()
            .map(|(path, _)| path.as_str())
            .filter(|path| path.ends_with(".go") && !path.ends_with("_test.go"))
            .filter(|path| {
                self.probes
                    .iter()
                    .any(|p| p.file == *path && p.kind == ProbeKind::Completion)
            })
            .collect();
        let count = count.min(candidates.len());
        (0..count)
            .map(|i| candidates[i * candidates.len() / count].to_owned())
            .collect()
    }
}

/// Names every package and type and draws the import graph.
fn plan_packages(size: Size, rng: &mut SplitMix64) -> Vec<PackagePlan> {
    assert!(
        size.files_per_package <= TYPE_WORDS.len(),
        "at most {} files per package",
        TYPE_WORDS.len()
    );
    let mut plan = Vec::with_capacity(size.packages);
    for index in 0..size.packages {
        let name = format!("{}{index}", rng.pick(&PACKAGE_WORDS));
        let mut words = TYPE_WORDS.to_vec();
        rng.shuffle(&mut words);
        let types = words[..size.files_per_package]
            .iter()
            .map(|w| (*w).to_owned())
            .collect();

        let mut deps = Vec::new();
        if index > 0 {
            let low = index.saturating_sub(IMPORT_WINDOW);
            let count = rng.between(1, MAX_IMPORTS).min(index - low);
            while deps.len() < count {
                let dep = rng.between(low, index - 1);
                if !deps.contains(&dep) {
                    deps.push(dep);
                }
            }
        }
        plan.push(PackagePlan { name, types, deps });
    }
    plan
}

/// Two copies of one module: the editor's checkout and the server's
/// workspace, at different paths so the tunnel has URIs to map.
#[derive(Debug)]
pub struct Checkouts {
    _dir: Option<tempfile::TempDir>,
    pub local: PathBuf,
    pub remote: PathBuf,
}

impl Checkouts {
    /// Writes `module` twice under a new directory in `parent`.
    pub fn write(module: &Module, parent: &Path) -> anyhow::Result<Checkouts> {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("ws-{}-", module.size.name))
            .tempdir_in(parent)
            .with_context(|| format!("failed to create a directory in {}", parent.display()))?;
        let local = dir.path().join("editor").join("gen");
        let remote = dir.path().join("server").join("gen");
        module.write(&local)?;
        module.write(&remote)?;
        Ok(Checkouts {
            local: local.canonicalize()?,
            remote: remote.canonicalize()?,
            _dir: Some(dir),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic() {
        let a = Module::generate(Size::SMALL, 42);
        let b = Module::generate(Size::SMALL, 42);
        assert_eq!(a.files, b.files);
    }

    #[test]
    fn seeds_change_output() {
        let a = Module::generate(Size::SMOKE, 1);
        let b = Module::generate(Size::SMOKE, 2);
        assert_ne!(a.files, b.files);
    }

    #[test]
    fn imports_point_backwards() {
        let module = Module::generate(Size::MEDIUM, DEFAULT_SEED);
        for (index, package) in module.plan.iter().enumerate() {
            for &dep in &package.deps {
                assert!(dep < index, "package {index} imports {dep}");
            }
        }
    }

    #[test]
    fn sizes_meet_their_targets() {
        let medium = Module::generate(Size::MEDIUM, DEFAULT_SEED).stats();
        assert_eq!(medium.packages, 500);
        let large = Module::generate(Size::LARGE, DEFAULT_SEED).stats();
        assert!(large.go_files >= 2000, "large has {} files", large.go_files);
    }

    #[test]
    fn probes_land_on_their_symbols() {
        let module = Module::generate(Size::SMOKE, DEFAULT_SEED);
        for probe in &module.probes {
            let text = module.text(&probe.file).unwrap();
            let line = text.lines().nth(probe.line as usize).unwrap();
            let before = &line[..probe.character as usize];
            let after = &line[probe.character as usize..];
            match probe.kind {
                ProbeKind::Completion => assert!(before.ends_with('.'), "{line:?}"),
                ProbeKind::References => assert!(after.starts_with("otal()"), "{line:?}"),
                ProbeKind::Hover | ProbeKind::Definition => {
                    assert!(
                        before.ends_with(|c: char| c.is_ascii_uppercase()),
                        "{line:?}"
                    )
                }
            }
        }
    }

    #[test]
    fn spread_files_have_every_probe_kind() {
        let module = Module::generate(Size::SMALL, DEFAULT_SEED);
        let files = module.spread_files(8);
        assert_eq!(files.len(), 8);
        for file in &files {
            for kind in ProbeKind::ALL {
                assert!(
                    module
                        .probes
                        .iter()
                        .any(|p| &p.file == file && p.kind == kind),
                    "{file} has no {kind:?} probe"
                );
            }
        }
    }
}
