//! Reading checkpoint tensors (safetensors in f32/f16/bf16, or PyTorch
//! `pytorch_model.bin`) into f32, under canonical names without the family
//! prefix (`bert.`, `distilbert.`, `roberta.`), so the encoder sees one naming
//! for bare encoders and classifiers alike.

use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::Linear;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Canonically named f32 tensors.
#[derive(Clone, Default)]
pub struct Weights {
    map: HashMap<String, Tensor>,
    /// Where they came from, for error messages.
    origin: String,
}

impl Weights {
    pub fn from_map(map: HashMap<String, Tensor>, family_prefix: &str, origin: &str) -> anyhow::Result<Self> {
        let mut out = HashMap::with_capacity(map.len());
        for (name, t) in map {
            let canonical = name.strip_prefix(family_prefix).unwrap_or(&name).to_owned();
            let t = if t.dtype() == DType::F32 { t } else { t.to_dtype(DType::F32)? };
            out.insert(canonical, t);
        }
        Ok(Self { map: out, origin: origin.to_owned() })
    }

    /// Reads the weight files of a model folder.
    pub fn load_dir(dir: &Path, family_prefix: &str) -> anyhow::Result<Self> {
        let files = weight_files(dir)?;
        let mut map = HashMap::new();
        for f in &files {
            map.extend(read_file(f)?);
        }
        Self::from_map(map, family_prefix, &dir.display().to_string())
    }

    /// Reads a safetensors buffer (the embedded default model).
    pub fn load_safetensors_bytes(bytes: &[u8], family_prefix: &str, origin: &str) -> anyhow::Result<Self> {
        let map = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
            .with_context(|| format!("cannot read safetensors weights of {origin}"))?;
        Self::from_map(map, family_prefix, origin)
    }

    /// The same tensors on `device` (those already there are shared, not copied).
    pub fn to_device(&self, device: &Device) -> anyhow::Result<Self> {
        let map = self
            .map
            .iter()
            .map(|(k, t)| Ok((k.clone(), if t.device().same_device(device) { t.clone() } else { t.to_device(device)? })))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { map, origin: self.origin.clone() })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub fn get(&self, name: &str) -> anyhow::Result<Tensor> {
        self.map.get(name).cloned().with_context(|| {
            format!(
                "weight \"{name}\" is missing in {} (hint: the checkpoint does not match config.json's model_type/architectures)",
                self.origin
            )
        })
    }

    pub fn insert(&mut self, name: &str, t: Tensor) {
        self.map.insert(name.to_owned(), t);
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.map.keys()
    }

    pub fn linear(&self, name: &str) -> anyhow::Result<Linear> {
        let w = self.get(&format!("{name}.weight"))?;
        let b = self.map.get(&format!("{name}.bias")).cloned();
        Ok(Linear::new(w, b))
    }

    /// LayerNorm weight, also under the old TF-converted name `gamma`.
    pub fn get_norm_weight(&self, name: &str) -> anyhow::Result<Tensor> {
        self.map.get(&format!("{name}.gamma")).cloned().map_or_else(|| self.get(&format!("{name}.weight")), Ok)
    }

    /// LayerNorm bias, also under the old name `beta`.
    pub fn get_norm_bias(&self, name: &str) -> anyhow::Result<Tensor> {
        self.map.get(&format!("{name}.beta")).cloned().map_or_else(|| self.get(&format!("{name}.bias")), Ok)
    }
}

/// The checkpoint files of a folder, in the order transformers prefers.
fn weight_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index)?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", index.display()))?;
        let mut files: Vec<String> = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .context("model.safetensors.index.json has no weight_map")?
            .values()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let bin = dir.join("pytorch_model.bin");
    if bin.is_file() {
        return Ok(vec![bin]);
    }
    bail!(
        "no weights in {} (expected model.safetensors, a sharded model.safetensors.index.json, or pytorch_model.bin; hint: download the full model folder)",
        dir.display()
    )
}

fn read_file(path: &Path) -> anyhow::Result<HashMap<String, Tensor>> {
    let hint = "hint: the file may be truncated or corrupt; download it again";
    if path.extension().is_some_and(|e| e == "bin") {
        let list = candle_core::pickle::read_all(path)
            .map_err(|e| anyhow::anyhow!("cannot read PyTorch weights {}: {e} ({hint})", path.display()))?;
        return Ok(list.into_iter().collect());
    }
    candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| anyhow::anyhow!("cannot read safetensors weights {}: {e} ({hint})", path.display()))
}
