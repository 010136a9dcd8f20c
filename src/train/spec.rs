//! What a model is, in words and numbers: the description a checkpoint carries so that
//! it can be opened again as the right model, and refused by the wrong one.

use std::collections::BTreeMap;

/// A model's kind, sizes and parts, as a checkpoint records them (its metadata and
/// `config.json`) and as [`super::load_model`] checks them before loading tensors.
///
/// `kind` names the model family (`"vae"`, `"cvae"`, `"vq-vae"`, `"linear-gaussian"`,
/// or a user's own, e.g. `"custom"`); `sizes` its dimensions by name (`x`, `h`, `z`
/// for a VAE; `k` and `dm` for a VQ-VAE's codebook); `parts` the choices that change
/// its tensors or their meaning (`likelihood`, `prior`). Two specs describe the same
/// model exactly when they are equal.
///
/// # Examples
/// ```
/// use latent::train::ModelSpec;
/// let a = ModelSpec::new("vae").size("x", 784).size("z", 20).part("prior", "standard-normal");
/// let b = ModelSpec::new("vae").size("x", 784).size("z", 10).part("prior", "standard-normal");
/// assert_eq!(a.differences(&b), vec!["size z: 20 here, 10 in the checkpoint".to_string()]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelSpec {
    /// The model family.
    pub kind: String,
    /// Dimensions by name.
    #[serde(default)]
    pub sizes: BTreeMap<String, usize>,
    /// Parts by role (`likelihood`, `prior`, …), each described in words.
    #[serde(default)]
    pub parts: BTreeMap<String, String>,
}

impl ModelSpec {
    /// A spec of `kind` with no sizes or parts yet.
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            ..Self::default()
        }
    }

    /// This spec with the size `name` set to `n`.
    pub fn size(mut self, name: impl Into<String>, n: usize) -> Self {
        self.sizes.insert(name.into(), n);
        self
    }

    /// This spec with the part `role` described as `what`.
    pub fn part(mut self, role: impl Into<String>, what: impl Into<String>) -> Self {
        self.parts.insert(role.into(), what.into());
        self
    }

    /// What differs between this spec (the model at hand) and `found` (a checkpoint's),
    /// one line each: kind, then sizes, then parts; empty when they are equal.
    pub fn differences(&self, found: &ModelSpec) -> Vec<String> {
        let mut out = Vec::new();
        if self.kind != found.kind {
            out.push(format!(
                "kind: {} here, {} in the checkpoint",
                self.kind, found.kind
            ));
        }
        diff_maps("size", &self.sizes, &found.sizes, &mut out);
        diff_maps("part", &self.parts, &found.parts, &mut out);
        out
    }
}

fn diff_maps<V: PartialEq + std::fmt::Display>(
    what: &str,
    here: &BTreeMap<String, V>,
    there: &BTreeMap<String, V>,
    out: &mut Vec<String>,
) {
    let keys: std::collections::BTreeSet<&String> = here.keys().chain(there.keys()).collect();
    for k in keys {
        match (here.get(k), there.get(k)) {
            (Some(a), Some(b)) if a != b => {
                out.push(format!("{what} {k}: {a} here, {b} in the checkpoint"))
            }
            (Some(a), None) => out.push(format!("{what} {k}: {a} here, absent in the checkpoint")),
            (None, Some(b)) => out.push(format!("{what} {k}: absent here, {b} in the checkpoint")),
            _ => {}
        }
    }
}

/// A model that can describe itself ([`ModelSpec`]), so that its checkpoints say what
/// they hold and [`super::load_model`] can refuse a checkpoint of another model.
pub trait Describe {
    /// This model's kind, sizes and parts.
    fn spec(&self) -> ModelSpec;
}

/// A part of a model (a likelihood or prior head) that can name itself, for
/// [`ModelSpec::parts`]: e.g. `"bernoulli"`, `"mixture(k=10)"`.
pub trait Named {
    /// The part in words, with the settings that change its tensors or its meaning.
    fn name(&self) -> String;
}
