//! Cargo.toml: `serial_test` becomes `lock-core` in the dependency tables, with the
//! file's formatting, comments and key order kept (toml_edit).

use toml_edit::{Array, DocumentMut, Item, Key, Table, Value};

use super::report::Change;
use super::tokio_floor::{admits, TASK_IDS_FLOOR};

/// serial_test 3.x's own dependencies that enable features: (crate, serial_test feature
/// that pulls it in (`None`: always), the features it enables). A crate that also depends
/// on one of these directly may have relied on them through serial_test.
const FEATURES_THROUGH_SERIAL_TEST: &[(&str, Option<&str>, &[&str])] = &[
    ("once_cell", None, &["std"]),
    ("futures-executor", Some("async"), &["std"]),
    ("futures-util", Some("async"), &["std"]),
    ("fslock", Some("file_locks"), &["std"]),
];

/// serial_test's default features.
const DEFAULTS: &[&str] = &["logging", "async"];

/// The result for Cargo.toml.
pub struct TomlResult {
    /// The new text, if anything changed.
    pub new_text: Option<String>,
    /// What changed.
    pub changes: Vec<Change>,
}

/// Every dependency table: `[dependencies]`, `[dev-dependencies]`, and their
/// `[target.'cfg(..)'.*]` forms, with a name for messages.
fn dep_tables(doc: &mut DocumentMut) -> Vec<(String, &mut Table)> {
    let mut out = Vec::new();
    let root = doc.as_table_mut();
    let mut target = None;
    for (k, v) in root.iter_mut() {
        match (k.get(), v) {
            ("dependencies" | "dev-dependencies", Item::Table(t)) => {
                out.push((k.get().to_owned(), t))
            }
            ("target", Item::Table(t)) => target = Some(t),
            _ => {}
        }
    }
    if let Some(t) = target {
        for (cfg, v) in t.iter_mut() {
            let Item::Table(per) = v else { continue };
            for (k, v) in per.iter_mut() {
                if let ("dependencies" | "dev-dependencies", Item::Table(t)) = (k.get(), v) {
                    out.push((format!("target.{}.{}", cfg.get(), k.get()), t));
                }
            }
        }
    }
    out
}

/// Replaces serial_test with lock-core (`dep`: the new entry's TOML value). With
/// `keep_serial_test` (attributes were left unmigrated), lock-core is added beside it.
pub fn rewrite(text: &str, dep: &str, keep_serial_test: bool) -> Result<TomlResult, String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| format!("Cargo.toml: cannot parse: {e}"))?;
    let mut new_value: Value = dep
        .parse()
        .map_err(|e| format!("--lock-core-dep `{dep}` is not a TOML value: {e}"))?;
    let mut notes = Vec::new();
    if let Some(req) = tokio_below_task_ids(&mut doc) {
        without_task_ids(&mut new_value);
        notes.push(format!(
            "tokio is kept at `{req}`, below the {}.{} that lock-core's default feature \
             `task-ids` needs: lock-core without it (sync verbs in tasks then know only \
             their thread; see lock-core's feature list)",
            TASK_IDS_FLOOR.0, TASK_IDS_FLOOR.1
        ));
    }
    let dep = &new_value.to_string().trim().to_owned();
    let line = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map_or(1, |i| i + 1)
    };
    let mut changes = Vec::new();
    let mut enabled: Vec<String> = Vec::new();
    let has_lock_core = dep_tables(&mut doc)
        .iter()
        .any(|(_, t)| t.contains_key("lock-core"));
    for (name, table) in dep_tables(&mut doc) {
        let Some(old) = table.get("serial_test") else {
            continue;
        };
        enabled.extend(features_of(old));
        if keep_serial_test {
            if !has_lock_core {
                table.insert("lock-core", Item::Value(new_value.clone()));
                changes.push(Change {
                    file: "Cargo.toml".into(),
                    line: line("serial_test"),
                    old: format!("[{name}]"),
                    new: format!("lock-core = {dep} (added beside serial_test)"),
                    notes: notes.clone(),
                });
            }
            continue;
        }
        let old_text = format!("serial_test = {}", old.to_string().trim());
        let keys: Vec<Key> = table
            .iter()
            .filter_map(|(k, _)| table.key(k).cloned())
            .collect();
        let mut items: Vec<(Key, Item)> = Vec::new();
        for k in keys {
            let item = table.get(k.get()).cloned().unwrap_or(Item::None);
            if k.get() == "serial_test" {
                if !has_lock_core {
                    let mut v = new_value.clone();
                    if let Item::Value(old) = &item {
                        *v.decor_mut() = old.decor().clone();
                    }
                    let nk = Key::new("lock-core")
                        .with_leaf_decor(k.leaf_decor().clone())
                        .with_dotted_decor(k.dotted_decor().clone());
                    items.push((nk, Item::Value(v)));
                }
            } else {
                items.push((k, item));
            }
        }
        table.clear();
        for (k, item) in items {
            table.insert_formatted(&k, item);
        }
        let new = if has_lock_core {
            "(removed; lock-core is already a dependency)".to_owned()
        } else {
            format!("lock-core = {dep}")
        };
        changes.push(Change {
            file: "Cargo.toml".into(),
            line: line("serial_test"),
            old: format!("[{name}] {old_text}"),
            new,
            notes: notes.clone(),
        });
    }
    if !keep_serial_test && !changes.is_empty() {
        enabled.extend(drop_feature_links(&mut doc, &line, &mut changes));
        for (krate, gate, feats) in FEATURES_THROUGH_SERIAL_TEST {
            if gate.is_some_and(|g| !enabled.iter().any(|e| e == g)) {
                continue;
            }
            for (name, table) in dep_tables(&mut doc) {
                let Some(item) = table.get_mut(krate) else {
                    continue;
                };
                let added = add_features(item, feats);
                if !added.is_empty() {
                    changes.push(Change {
                        file: "Cargo.toml".into(),
                        line: line(krate),
                        old: format!("[{name}] {krate}"),
                        new: format!(
                            "{krate} with feature(s) {} (enabled through serial_test before)",
                            added.join(", ")
                        ),
                        notes: Vec::new(),
                    });
                }
            }
        }
    }
    let out = doc.to_string();
    Ok(TomlResult {
        new_text: (out != text).then_some(out),
        changes,
    })
}

/// Removes what `[features]` says of serial_test (`serial_test/f`, `serial_test?/f`,
/// `dep:serial_test`): Cargo refuses a manifest whose features name a dependency it no
/// longer has. Returns the serial_test features those entries enabled.
fn drop_feature_links(
    doc: &mut DocumentMut,
    line: &dyn Fn(&str) -> usize,
    changes: &mut Vec<Change>,
) -> Vec<String> {
    let mut enabled = Vec::new();
    let Some(Item::Table(features)) = doc.get_mut("features") else {
        return enabled;
    };
    for (name, item) in features.iter_mut() {
        let Some(list) = item.as_array_mut() else {
            continue;
        };
        let mut removed = Vec::new();
        let first_prefix = list.get(0).and_then(|v| v.decor().prefix().cloned());
        list.retain(|v| {
            let Some(s) = v.as_str() else { return true };
            let through = s
                .strip_prefix("serial_test/")
                .or_else(|| s.strip_prefix("serial_test?/"));
            if let Some(f) = through {
                enabled.push(f.to_owned());
            } else if s != "dep:serial_test" {
                return true;
            }
            removed.push(format!("\"{s}\""));
            false
        });
        if !removed.is_empty() {
            // The new first entry takes the old first one's place: `["a"]`, not `[ "a"]`.
            if let (Some(first), Some(prefix)) = (list.get_mut(0), first_prefix) {
                first.decor_mut().set_prefix(prefix);
            }
            changes.push(Change {
                file: "Cargo.toml".into(),
                line: line(&format!("{} =", name.get())),
                old: format!("[features] {} with {}", name.get(), removed.join(", ")),
                new: format!(
                    "{} without them (serial_test is no longer a dependency)",
                    name.get()
                ),
                notes: Vec::new(),
            });
        }
    }
    enabled
}

/// The first Tokio requirement of the manifest that stays below lock-core's `task-ids`
/// floor (entries named `tokio` or renamed with `package = "tokio"`).
fn tokio_below_task_ids(doc: &mut DocumentMut) -> Option<String> {
    for (_, table) in dep_tables(doc) {
        for (key, item) in table.iter() {
            let package = item.get("package").and_then(Item::as_str).unwrap_or(key);
            if package != "tokio" {
                continue;
            }
            let req = item
                .as_str()
                .or_else(|| item.get("version").and_then(Item::as_str));
            if let Some(req) = req {
                if admits(req, TASK_IDS_FLOOR) == Some(false) {
                    return Some(req.to_owned());
                }
            }
        }
    }
    None
}

/// Turns the lock-core entry into one without default features but `rt-multi-thread`.
fn without_task_ids(value: &mut Value) {
    if let Some(version) = value.as_str().map(str::to_owned) {
        let mut t = toml_edit::InlineTable::new();
        t.insert("version", version.into());
        *value = Value::InlineTable(t);
    }
    let Some(t) = value.as_inline_table_mut() else {
        return;
    };
    t.insert("default-features", false.into());
    match t.get_mut("features").and_then(Value::as_array_mut) {
        Some(a) => {
            if !a.iter().any(|v| v.as_str() == Some("rt-multi-thread")) {
                a.push("rt-multi-thread");
            }
        }
        None => {
            let mut a = Array::new();
            a.push("rt-multi-thread");
            t.insert("features", Value::Array(a));
        }
    }
    t.fmt();
}

/// The serial_test features an entry enables (defaults unless `default-features = false`).
fn features_of(item: &Item) -> Vec<String> {
    let get = |k: &str| item.get(k);
    let mut out: Vec<String> = Vec::new();
    let defaults = get("default-features")
        .or_else(|| get("default_features"))
        .and_then(Item::as_bool)
        .unwrap_or(true);
    if defaults {
        out.extend(DEFAULTS.iter().map(|s| (*s).to_owned()));
    }
    if let Some(a) = get("features").and_then(Item::as_array) {
        out.extend(a.iter().filter_map(|v| v.as_str().map(str::to_owned)));
    }
    out
}

/// Makes `item` (a dependency entry) enable `feats`; returns those it added.
fn add_features(item: &mut Item, feats: &[&str]) -> Vec<String> {
    if let Some(version) = item.as_str().map(str::to_owned) {
        let mut t = toml_edit::InlineTable::new();
        t.insert("version", version.into());
        t.insert("features", Value::Array(Array::new()));
        let decor = item.as_value().map(|v| v.decor().clone());
        let mut v = Value::InlineTable(t);
        if let Some(d) = decor {
            *v.decor_mut() = d;
        }
        *item = Item::Value(v);
    }
    let Some(t) = item.as_table_like_mut() else {
        return Vec::new();
    };
    if t.get("features").is_none() {
        t.insert("features", Item::Value(Value::Array(Array::new())));
        if let Some(inline) = item.as_inline_table_mut() {
            // Commas and spaces as in `{ version = "1", features = ["std"] }`.
            inline.fmt();
        }
    }
    let Some(t) = item.as_table_like_mut() else {
        return Vec::new();
    };
    let Some(arr) = t.get_mut("features").and_then(Item::as_array_mut) else {
        return Vec::new();
    };
    let mut added = Vec::new();
    for f in feats {
        if !arr.iter().any(|v| v.as_str() == Some(f)) {
            arr.push(*f);
            added.push((*f).to_owned());
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn features_that_named_serial_test_lose_those_entries_and_count_as_enabled() {
        let before = r#"[package]
name = "x"

[dependencies]
serial_test = { version = "3", default-features = false }
futures-util = { version = "0.3", default-features = false }

[features]
default = ["logging", "async"]
logging = ["serial_test/logging"]
async = ["serial_test?/async", "dep:other"]
all = ["dep:serial_test", "logging"]
"#;
        let out = rewrite(before, "\"0.1\"", false).expect("rewritten");
        let after = out.new_text.expect("changed");
        assert!(!after.contains("serial_test"), "{after}");
        assert!(after.contains("logging = []"), "{after}");
        assert!(after.contains("async = [\"dep:other\"]"), "{after}");
        assert!(after.contains("all = [\"logging\"]"), "{after}");
        // `async` was enabled through [features]: futures-util keeps its `std`.
        assert!(
            after.contains("futures-util = { version = \"0.3\", default-features = false, features = [\"std\"] }"),
            "{after}"
        );
        assert!(after.parse::<toml_edit::DocumentMut>().is_ok());
        let said: Vec<_> = out.changes.iter().map(|c| c.old.as_str()).collect();
        assert!(
            said.contains(&"[features] async with \"serial_test?/async\""),
            "{said:?}"
        );
    }

    #[test]
    fn a_tokio_pin_below_1_41_turns_task_ids_off_with_a_note() {
        let before = "[dev-dependencies]\nserial_test = \"3\"\ntokio = \"=1.38.2\"\n";
        let out = rewrite(before, "{ path = \"../lock-core\" }", false).expect("rewritten");
        let after = out.new_text.expect("changed");
        assert!(
            after.contains(
                "lock-core = { path = \"../lock-core\", default-features = false, features = [\"rt-multi-thread\"] }"
            ),
            "{after}"
        );
        assert!(out.changes[0].notes[0].contains("`=1.38.2`"));
        let newer = "[dev-dependencies]\nserial_test = \"3\"\ntokio = \"1.38\"\n";
        let out = rewrite(newer, "\"0.1\"", false).expect("rewritten");
        assert!(out
            .new_text
            .expect("changed")
            .contains("lock-core = \"0.1\""));
    }
}
