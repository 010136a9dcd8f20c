//! Data: the IDX format, in-memory data sets with seeded minibatches and
//! binarization, Fashion-MNIST discovery with an embedded offline subset, and
//! real-valued tables from `.npy`/`.npz`/CSV files.

pub mod condition;
pub mod dataset;
pub mod fashion;
pub mod idx;
pub mod support;
pub mod table;

pub use condition::{Conditioning, LabelCondition, TopRowsCondition};
pub use dataset::{shuffled_batches, Binarization, Dataset};
pub use fashion::{check_pair, discover, embedded, load_dir, Splits, CLASS_NAMES};
pub use idx::{
    default_max_bytes, encode_idx, parse_idx, parse_idx_limited, read_idx, write_idx, IdxArray,
};
pub use support::{check_support, ValueSupport};
pub use table::{load_table, read_csv, read_npy, read_npz, Scaler, Scaling};
