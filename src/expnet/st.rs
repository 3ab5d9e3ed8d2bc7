//! Minimal safetensors reading/writing for plain `f32`/`u64` buffers.
//!
//! The crate's `safetensors` (0.4) is not the version candle links, so
//! candle tensors cannot be handed to it directly; ExpNet's tensors are tiny,
//! so we move them as byte buffers and keep candle out of the file format.

use std::borrow::Cow;
use std::collections::HashMap;

use anyhow::Context;
use safetensors::tensor::{Dtype, SafeTensors, View};

/// One tensor ready to be written.
pub(crate) struct Buffer {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl Buffer {
    pub(crate) fn f32(shape: Vec<usize>, values: &[f32]) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        Self { dtype: Dtype::F32, shape, bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect() }
    }
    pub(crate) fn u64(shape: Vec<usize>, values: &[u64]) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        Self { dtype: Dtype::U64, shape, bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect() }
    }
    pub(crate) fn u8(shape: Vec<usize>, values: Vec<u8>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        Self { dtype: Dtype::U8, shape, bytes: values }
    }
}

impl View for &Buffer {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Serialises named tensors plus one JSON metadata entry under `key`.
pub(crate) fn serialize(tensors: &[(String, Buffer)], key: &str, json: String) -> anyhow::Result<Vec<u8>> {
    let meta = Some(HashMap::from([(key.to_string(), json)]));
    safetensors::tensor::serialize(tensors.iter().map(|(n, b)| (n.as_str(), b)), &meta)
        .map_err(|e| anyhow::anyhow!("could not serialise safetensors: {e:?}"))
}

/// A parsed file: the metadata JSON under `key` and access to its tensors.
pub(crate) struct Reader<'a> {
    st: SafeTensors<'a>,
    pub(crate) json: String,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Parses `bytes`; `what` names the expected kind of file in errors.
    pub(crate) fn new(bytes: &'a [u8], key: &str, what: &'static str) -> anyhow::Result<Self> {
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| {
            anyhow::anyhow!("not a valid {what} (corrupt or truncated safetensors file: {e:?})")
        })?;
        let json = meta.metadata().as_ref().and_then(|m| m.get(key)).cloned().with_context(|| {
            format!("this safetensors file has no \"{key}\" metadata entry, so it is not a {what}")
        })?;
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| anyhow::anyhow!("not a valid {what} (corrupt safetensors data: {e:?})"))?;
        Ok(Self { st, json, what })
    }

    fn view(&self, name: &str, dtype: Dtype, shape: &[usize]) -> anyhow::Result<safetensors::tensor::TensorView<'a>> {
        let t = self.st.tensor(name).map_err(|_| anyhow::anyhow!("{} is missing tensor \"{name}\"", self.what))?;
        anyhow::ensure!(
            t.dtype() == dtype && t.shape() == shape,
            "{}: tensor \"{name}\" is {:?} {:?}, expected {dtype:?} {shape:?}",
            self.what,
            t.dtype(),
            t.shape()
        );
        Ok(t)
    }

    pub(crate) fn f32(&self, name: &str, shape: &[usize]) -> anyhow::Result<Vec<f32>> {
        let t = self.view(name, Dtype::F32, shape)?;
        let v: Vec<f32> = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        anyhow::ensure!(v.iter().all(|x| x.is_finite()), "{}: tensor \"{name}\" contains NaN or infinity", self.what);
        Ok(v)
    }

    pub(crate) fn u64(&self, name: &str, shape: &[usize]) -> anyhow::Result<Vec<u64>> {
        let t = self.view(name, Dtype::U64, shape)?;
        Ok(t.data().chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8-byte chunk"))).collect())
    }

    pub(crate) fn u8(&self, name: &str, shape: &[usize]) -> anyhow::Result<Vec<u8>> {
        Ok(self.view(name, Dtype::U8, shape)?.data().to_vec())
    }

    /// The shape of a tensor, to size the reads of variable-length files.
    pub(crate) fn shape(&self, name: &str) -> anyhow::Result<Vec<usize>> {
        let t = self.st.tensor(name).map_err(|_| anyhow::anyhow!("{} is missing tensor \"{name}\"", self.what))?;
        Ok(t.shape().to_vec())
    }
}
