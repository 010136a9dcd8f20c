//! Every figure in the README comes from a committed result file.
//!
//! The README is read block by block (a block: lines between blank lines; fenced code
//! is skipped). A *figure* is a number written with two or more decimals (`238.32`,
//! `−242.33`, `0.0925`) or an integer with thousands separators (`56,502`). Each block
//! that states figures must name, in backticks or as a link, at least one file under
//! `docs/` or `benches/` (a block naming none takes the files of the block just before
//! it: the paragraph that introduces a table), and each figure must be found in one of
//! those files: some number there that rounds to it at the figure's precision (signs
//! aside, so `−ELBO 105.66` matches a stored ELBO of −105.66). A version number right
//! after the name of its software (`Rust 1.89`, `PyTorch 2.15`) is no figure.

use std::path::Path;

/// The numbers in `text` as (value, decimals): `-12.345e-3`, `1,234`, `−0.5`.
fn numbers(text: &str, with_separators: bool) -> Vec<(String, f64, usize, bool)> {
    let t: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let starts = t[i].is_ascii_digit() && (i == 0 || !is_word(t[i - 1]));
        if !starts {
            i += 1;
            continue;
        }
        let mut s = String::new();
        let mut grouped = false;
        while i < t.len() {
            let c = t[i];
            let digit_after = |k: usize| t.get(k).is_some_and(|c| c.is_ascii_digit());
            let decimal_point =
                c == '.' && digit_after(i + 1) && !s.contains('.') && !s.contains('e');
            if c.is_ascii_digit() || decimal_point {
                s.push(c);
            } else if with_separators
                && c == ','
                && !s.contains('.')
                && (1..=3).all(|k| digit_after(i + k))
                && !digit_after(i + 4)
            {
                grouped = true;
            } else if (c == 'e' || c == 'E')
                && !s.contains('e')
                && (digit_after(i + 1)
                    || (matches!(t.get(i + 1), Some('-' | '+')) && digit_after(i + 2)))
            {
                s.push('e');
                if !t[i + 1].is_ascii_digit() {
                    s.push(t[i + 1]);
                    i += 1;
                }
            } else {
                break;
            }
            i += 1;
        }
        if i < t.len() && is_word(t[i]) {
            // Part of a word or an identifier (`x86`, `v4`, `k5`): not a figure.
            continue;
        }
        let decimals = match (s.find('.'), s.find('e')) {
            (Some(p), None) => s.len() - p - 1,
            _ => 0,
        };
        if let Ok(v) = s.parse::<f64>() {
            out.push((s.clone(), v, decimals, grouped));
        }
    }
    out
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Software whose version numbers the README names.
const VERSIONED: [&str; 6] = ["Rust", "rustc", "PyTorch", "dfdx", "Python", "CUDA"];

/// The README's figures: two or more decimals, or thousands separators.
fn figures(line: &str) -> Vec<(String, f64, usize)> {
    let mut text = line.to_string();
    for name in VERSIONED {
        // Blank out "NAME 1.2.3" so its version is not read as a figure.
        let mut from = 0;
        while let Some(p) = text[from..].find(&format!("{name} ")) {
            let start = from + p + name.len() + 1;
            let end = text[start..]
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .map_or(text.len(), |e| start + e);
            text.replace_range(start..end, &" ".repeat(end - start));
            from = start;
        }
    }
    numbers(&text, true)
        .into_iter()
        .filter(|(_, _, d, grouped)| *d >= 2 || *grouped)
        .map(|(s, v, d, _)| (s, v, d))
        .collect()
}

/// Whether some number in `text` rounds to `value` at `decimals`.
fn found(text: &str, value: f64, decimals: usize) -> bool {
    let want = format!("{:.*}", decimals, value.abs());
    numbers(text, false)
        .iter()
        .any(|(_, v, _, _)| format!("{:.*}", decimals, v.abs()) == want)
}

/// The repository paths a block names: inside backticks or a Markdown link target.
fn cited(block: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for (i, piece) in block.split('`').enumerate() {
        if i % 2 == 1 {
            paths.extend(piece.split_whitespace().map(str::to_string));
        }
    }
    for piece in block.split("](").skip(1) {
        if let Some(end) = piece.find(')') {
            paths.push(piece[..end].to_string());
        }
    }
    paths
        .into_iter()
        .map(|p| p.trim_matches(|c| "`()[],;:".contains(c)).to_string())
        .filter(|p| p.starts_with("docs/") || p.starts_with("benches/"))
        .collect()
}

/// The text of every file a path names (a directory: every file under it).
fn read_all(root: &Path, path: &str) -> Vec<(String, String)> {
    let full = root.join(path);
    let mut out = Vec::new();
    if full.is_dir() {
        let mut stack = vec![full];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(text) = std::fs::read_to_string(&p) {
                    out.push((p.display().to_string(), text));
                }
            }
        }
    } else if let Ok(text) = std::fs::read_to_string(&full) {
        out.push((path.to_string(), text));
    }
    out
}

/// The README's blocks outside fenced code, with their first line numbers.
fn blocks(readme: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let (mut fenced, mut current, mut start) = (false, String::new(), 0);
    for (n, line) in readme.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push((start, std::mem::take(&mut current)));
            }
            continue;
        }
        if current.is_empty() {
            start = n + 1;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.is_empty() {
        out.push((start, current));
    }
    out
}

/// The text a reader sees: inline code, link targets and image paths removed, so that
/// `--lr 5e-4` or a file name is no figure.
fn prose(block: &str) -> String {
    let mut text = String::new();
    for (i, piece) in block.split('`').enumerate() {
        if i % 2 == 0 {
            text.push_str(piece);
        }
    }
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(p) = rest.find("](") {
        out.push_str(&rest[..p]);
        rest = rest[p + 2..]
            .find(')')
            .map_or("", |e| &rest[p + 2 + e + 1..]);
    }
    out.push_str(rest);
    out
}

#[test]
fn every_readme_figure_is_in_a_committed_result_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut problems = Vec::new();
    let mut checked = 0;
    let mut before: Vec<String> = Vec::new();
    for (line, block) in blocks(&readme) {
        let named = cited(&block);
        let names = if named.is_empty() {
            std::mem::take(&mut before)
        } else {
            named.clone()
        };
        before = named;
        let figs = figures(&prose(&block));
        if figs.is_empty() {
            continue;
        }
        let files: Vec<(String, String)> = names.iter().flat_map(|p| read_all(root, p)).collect();
        if files.is_empty() {
            problems.push(format!(
                "README.md:{line}: figures {:?} with no result file named in the block",
                figs.iter().map(|f| &f.0).collect::<Vec<_>>()
            ));
            continue;
        }
        for (text, value, decimals) in figs {
            checked += 1;
            if !files.iter().any(|(_, t)| found(t, value, decimals)) {
                problems.push(format!(
                    "README.md:{line}: {text} is in none of {:?}",
                    files.iter().map(|f| &f.0).collect::<Vec<_>>()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        checked >= 10,
        "only {checked} figures found: is the parser broken?"
    );
    println!("{checked} README figures found in their result files");
}

#[test]
fn the_checker_reads_figures_and_rejects_a_missing_one() {
    let block =
        "| VAE | −242.33 | 238.32 ± 0.01 | 56,502 img/s | `--lr 5e-4` x86-64-v4 PyTorch 2.15 |\n\
                 (`docs/results/quickstart/full/summary.json`)";
    let figs: Vec<String> = figures(&prose(block)).into_iter().map(|f| f.0).collect();
    assert_eq!(figs, ["242.33", "238.32", "0.01", "56502"]);
    assert_eq!(cited(block), ["docs/results/quickstart/full/summary.json"]);
    let file = r#"{"test_elbo": -242.32508011550902, "train_images_per_s": 56501.76, "x": 2e-3}"#;
    assert!(found(file, -242.33, 2));
    assert!(found(file, 56502.0, 0));
    assert!(!found(file, 242.34, 2));
    assert!(!found(file, 238.32, 2));
}
