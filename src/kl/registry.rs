//! An open registry of closed-form KL divergences: a user's own `KL(Q ‖ P)`, written
//! once as a [`KlDivergence`] impl and registered with [`register_kl`], is what
//! [`registered_kl`](crate::kl::registered_kl) returns for that pair, so
//! [`Elbo`](crate::Elbo)'s analytic KL uses it with no change to the model.
//!
//! The conformance kit checks the same code: a `conformance::KlPair` (feature `conformance`)
//! whose `kl` calls `q.kl_divergence(p)` tests exactly the impl that was registered
//! (see `tests/kl_registry.rs`, where a deliberately wrong registered formula both
//! changes the training loss and fails the kit).
//!
//! Registration is process-wide and keyed by the concrete types `(Q, P)` (including
//! the event size, dtype, device and tape): register once per tape type you train or
//! evaluate with (`OwnedTape<E, D>` and `NoneTape`); a later registration of the same
//! pair replaces the earlier one. The built-in pairs are looked up before the registry.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use dfdx::prelude::*;

use super::divergence::KlDivergence;
use crate::distributions::Distribution;
use crate::error::Result;
use crate::kernels::ops::{PerExample, Real};

type Entry = Box<dyn Fn(&dyn Any, &dyn Any) -> Option<Box<dyn Any>> + Send + Sync>;

fn table() -> &'static RwLock<HashMap<(TypeId, TypeId), Entry>> {
    static TABLE: OnceLock<RwLock<HashMap<(TypeId, TypeId), Entry>>> = OnceLock::new();
    TABLE.get_or_init(|| RwLock::new(HashMap::new()))
}

/// Registers `Q`'s [`KlDivergence<P>`] impl as the closed form of `KL(Q ‖ P)` for
/// [`registered_kl`](crate::kl::registered_kl) (and so for [`crate::Elbo`]).
///
/// # Examples
/// ```
/// use dfdx::prelude::*;
/// use latent::distributions::Exponential;
/// use latent::kl::{is_registered, register_kl};
///
/// // Exponential‖Exponential is built in; registering it again is allowed (the
/// // built-in is looked up first) and shows the call.
/// type Q = Exponential<Const<3>, f32, Cpu, OwnedTape<f32, Cpu>>;
/// register_kl::<Const<3>, f32, Cpu, OwnedTape<f32, Cpu>, Q, Q>();
/// assert!(is_registered::<Q, Q>());
/// ```
pub fn register_kl<N, E, D, T, Q, P>()
where
    N: Dim,
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
    Q: 'static + Distribution<N, E, D> + KlDivergence<P, Output = PerExample<E, D, T>>,
    P: 'static + Distribution<N, E, D>,
{
    let entry: Entry = Box::new(|q: &dyn Any, p: &dyn Any| {
        let q = q.downcast_ref::<Q>()?;
        let p = p.downcast_ref::<P>()?;
        let kl: Result<PerExample<E, D, T>> = q.fork().kl_divergence(p.fork());
        Some(Box::new(kl) as Box<dyn Any>)
    });
    let mut t = table().write().unwrap_or_else(|e| e.into_inner());
    t.insert((TypeId::of::<Q>(), TypeId::of::<P>()), entry);
}

/// Whether a closed form for `(Q, P)` was registered with [`register_kl`].
pub fn is_registered<Q: 'static, P: 'static>() -> bool {
    let t = table().read().unwrap_or_else(|e| e.into_inner());
    t.contains_key(&(TypeId::of::<Q>(), TypeId::of::<P>()))
}

/// Removes the registration of `(Q, P)`; returns whether there was one.
pub fn unregister_kl<Q: 'static, P: 'static>() -> bool {
    let mut t = table().write().unwrap_or_else(|e| e.into_inner());
    t.remove(&(TypeId::of::<Q>(), TypeId::of::<P>())).is_some()
}

/// The registered closed form of `KL(q ‖ p)`, if `(Q, P)` was registered and its
/// output is `PerExample<E, D, T>`.
pub(crate) fn lookup<E, D, T, Q, P>(q: &Q, p: &P) -> Option<Result<PerExample<E, D, T>>>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
    Q: 'static,
    P: 'static,
{
    let t = table().read().unwrap_or_else(|e| e.into_inner());
    let f = t.get(&(TypeId::of::<Q>(), TypeId::of::<P>()))?;
    let out = f(q as &dyn Any, p as &dyn Any)?;
    out.downcast::<Result<PerExample<E, D, T>>>()
        .ok()
        .map(|b| *b)
}
