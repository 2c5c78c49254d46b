//! Merge the keys a template owns into an operator's TOML file with toml_edit, keeping their
//! comments, order and every key the migration does not own.

use toml_edit::{DocumentMut, Item, Table, TableLike};

/// Set every value of `src` into `dst`, creating tables as needed. A value that exists keeps its
/// comments; a table that does not exist arrives with the template's comments.
pub fn merge(dst: &mut DocumentMut, src: &DocumentMut) {
    merge_table(dst.as_table_mut(), src.as_table());
}

fn merge_table(dst: &mut dyn TableLike, src: &dyn TableLike) {
    for (key, item) in src.iter() {
        match (dst.get_mut(key), item) {
            (Some(existing), src_item) if existing.is_table_like() && src_item.is_table_like() => {
                merge_table(
                    existing.as_table_like_mut().unwrap(),
                    src_item.as_table_like().unwrap(),
                );
            }
            (Some(Item::Value(existing)), Item::Value(new)) => {
                let decor = existing.decor().clone();
                *existing = new.clone();
                *existing.decor_mut() = decor;
            }
            (Some(existing), new) => *existing = fresh(new),
            (None, new) => {
                dst.insert(key, fresh(new));
                // Keep the template's comment above a new key or table.
                if let (Some(mut k), Some(sk)) = (dst.key_mut(key), src.key(key)) {
                    *k.leaf_decor_mut() = sk.leaf_decor().clone();
                }
            }
        }
    }
}

/// A copy of a template item without its document positions, so that toml_edit lays new tables
/// out after their parent in the operator's file instead of at the template's line numbers.
fn fresh(item: &Item) -> Item {
    match item {
        Item::Table(t) => {
            let mut out = Table::new();
            out.set_implicit(t.is_implicit());
            out.set_dotted(t.is_dotted());
            *out.decor_mut() = t.decor().clone();
            for (k, v) in t.iter() {
                out.insert(k, fresh(v));
                if let (Some(mut nk), Some(sk)) = (out.key_mut(k), t.key(k)) {
                    *nk.leaf_decor_mut() = sk.leaf_decor().clone();
                }
            }
            Item::Table(out)
        }
        other => other.clone(),
    }
}

/// The table at a dotted path, created (implicit) where missing; a non-table in the way is
/// replaced.
pub fn table_at<'a>(root: &'a mut Table, path: &[&str]) -> &'a mut Table {
    let mut t = root;
    for seg in path {
        let entry = t.entry(seg).or_insert_with(|| {
            let mut n = Table::new();
            n.set_implicit(true);
            Item::Table(n)
        });
        if !entry.is_table() {
            // An inline table becomes a regular one; anything else is not a table and goes.
            *entry = match entry.as_inline_table() {
                Some(it) => Item::Table(it.clone().into_table()),
                None => Item::Table(Table::new()),
            };
        }
        t = entry.as_table_mut().unwrap();
    }
    t
}

/// The table at a path, if present.
pub fn get_table_mut<'a>(root: &'a mut Table, path: &[&str]) -> Option<&'a mut Table> {
    let mut t = root;
    for seg in path {
        t = t.get_mut(seg)?.as_table_mut()?;
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_comments_and_unrelated_keys() {
        let mut dst: DocumentMut =
            "# mine\nroot = \"/x\" # keep me\n\n[a]\nold = 1\nset = 2 # note\n"
                .parse()
                .unwrap();
        let src: DocumentMut = "root = \"/y\"\n[a]\nset = 3\n# new table\n[a.b]\nc = true\n"
            .parse()
            .unwrap();
        merge(&mut dst, &src);
        assert_eq!(
            dst.to_string(),
            "# mine\nroot = \"/y\" # keep me\n\n[a]\nold = 1\nset = 3 # note\n# new table\n[a.b]\nc = true\n"
        );
    }
}
