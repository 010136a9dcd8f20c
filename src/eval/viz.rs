//! Pictures: grids of grey-level images written as PNG.

use std::path::Path;

use crate::error::{Error, Result};

/// Writes `images` (each `rows · cols` intensities in `[0, 1]`, row-major) as one
/// greyscale PNG grid with `grid_cols` images per row and a 2-pixel dark-grey border.
/// Values outside `[0, 1]` are clipped for display; NaN shows as black.
///
/// # Errors
/// [`Error::ShapeMismatch`] if `images.len()` is not a multiple of `rows · cols` or
/// `grid_cols == 0`; [`Error::Io`] / [`Error::Image`] if the file cannot be written.
pub fn save_image_grid(
    path: impl AsRef<Path>,
    images: &[f32],
    rows: usize,
    cols: usize,
    grid_cols: usize,
) -> Result<()> {
    let path = path.as_ref();
    let dim = rows * cols;
    if grid_cols == 0 {
        return Err(Error::invalid("grid_cols", "must be at least 1"));
    }
    if dim == 0 || !images.len().is_multiple_of(dim) || images.is_empty() {
        return Err(Error::not_a_multiple(
            "save_image_grid (values per image)",
            dim,
            images.len(),
        ));
    }
    let n = images.len() / dim;
    let grid_rows = n.div_ceil(grid_cols);
    let pad = 2;
    let width = grid_cols * (cols + pad) + pad;
    let height = grid_rows * (rows + pad) + pad;
    let mut buf = vec![64u8; width * height];
    for (k, img) in images.chunks(dim).enumerate() {
        let (gy, gx) = (k / grid_cols, k % grid_cols);
        let (y0, x0) = (pad + gy * (rows + pad), pad + gx * (cols + pad));
        for r in 0..rows {
            for c in 0..cols {
                let v = img[r * cols + c];
                let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
                buf[(y0 + r) * width + x0 + c] = (v * 255.0).round() as u8;
            }
        }
    }
    let img_err = |e: png::EncodingError| Error::Image {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    crate::train::run_dir::write_atomically(path, |w| {
        let mut enc = png::Encoder::new(w, width as u32, height as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(img_err)?;
        writer.write_image_data(&buf).map_err(img_err)?;
        writer.finish().map_err(img_err)
    })
}
