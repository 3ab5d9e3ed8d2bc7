//! A fingerprint of a model's identity: its shape, labels and every weight.
//!
//! An ExpNet reads one particular model's attention heads and hidden states;
//! applied to another model of the same shape it silently explains nonsense.
//! The fingerprint lets an ExpNet file say which model it was trained for,
//! and lets loaders refuse (or label) a mismatch. It identifies weights, it
//! is not a security hash: two 64-bit lanes of a fast multiply–rotate mix
//! over the f32 values in name order, so it is independent of how the
//! checkpoint was stored (safetensors or `.bin`, f16 or f32 on disk gives the
//! same value only when the f32 values are equal).

use super::config::ModelConfig;
use super::weights::Weights;

/// Streaming 128-bit hasher (two independent 64-bit lanes).
struct Mix {
    a: u64,
    b: u64,
}

impl Mix {
    fn new() -> Self {
        Self { a: 0x243f_6a88_85a3_08d3, b: 0x1319_8a2e_0370_7344 }
    }
    fn word(&mut self, w: u64) {
        self.a = (self.a ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        self.b = (self.b.rotate_left(17) ^ w).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    }
    fn bytes(&mut self, bytes: &[u8]) {
        self.word(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().expect("8-byte chunk")));
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.word(u64::from_le_bytes(tail));
    }
    fn finish(mut self) -> String {
        // Final avalanche so nearby inputs differ in every hex digit.
        for _ in 0..2 {
            self.a ^= self.a >> 33;
            self.a = self.a.wrapping_mul(0xff51_afd7_ed55_8ccd);
            self.b ^= self.b >> 29;
            self.b = self.b.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
            std::mem::swap(&mut self.a, &mut self.b);
            self.a ^= self.b;
        }
        format!("{:016x}{:016x}", self.a, self.b)
    }
}

/// Fingerprint over the config's shape and labels and all weight tensors.
pub fn fingerprint(cfg: &ModelConfig, weights: &Weights) -> anyhow::Result<String> {
    let mut h = Mix::new();
    h.bytes(cfg.family.as_str().as_bytes());
    for v in [cfg.num_layers, cfg.num_heads, cfg.hidden_size, cfg.vocab_size] {
        h.word(v as u64);
    }
    for l in &cfg.labels {
        h.bytes(l.as_bytes());
    }
    let mut names: Vec<&String> = weights.names().collect();
    names.sort();
    for name in names {
        let t = weights.get(name)?;
        h.bytes(name.as_bytes());
        for d in t.dims() {
            h.word(*d as u64);
        }
        let values = t.flatten_all()?.to_vec1::<f32>()?;
        let mut buf = Vec::with_capacity(values.len() * 4);
        for v in values {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        h.bytes(&buf);
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use std::collections::HashMap;

    fn weights(v: f32) -> Weights {
        let map = HashMap::from([
            ("a.weight".to_string(), Tensor::from_vec(vec![1.0f32, 2.0, v], 3, &Device::Cpu).unwrap()),
            ("b.bias".to_string(), Tensor::from_vec(vec![0.5f32; 4], (2, 2), &Device::Cpu).unwrap()),
        ]);
        Weights::from_map(map, "", "test").unwrap()
    }

    #[test]
    fn equal_weights_agree_and_any_change_differs() {
        let cfg = ModelConfig::from_json(serde_json::json!({
            "model_type": "bert", "hidden_size": 4, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 8, "vocab_size": 10, "max_position_embeddings": 16,
        }))
        .unwrap();
        let a = fingerprint(&cfg, &weights(3.0)).unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(a, fingerprint(&cfg, &weights(3.0)).unwrap());
        assert_ne!(a, fingerprint(&cfg, &weights(3.000_001)).unwrap());
        let mut other = cfg.clone();
        other.labels = vec!["x".into(), "y".into()];
        assert_ne!(a, fingerprint(&other, &weights(3.0)).unwrap());
    }
}
