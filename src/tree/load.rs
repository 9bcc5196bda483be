//! Building a tree from a snapshot's node list.
//!
//! Owns: the walk state while a snapshot is read. Must not touch the file format (that is
//! `persist::snapshot`). Pure.
//!
//! Snapshots list parents before children, depth first (ZooKeeper's and zabd's writers
//! both do). The loader keeps the open ancestors of the last node — their paths are
//! prefixes of its path, so one string holds them all — and collects each one's child
//! names, attaching them in bulk when the walk leaves it. A node then costs one map insert,
//! instead of an insert, a parent lookup and a B-tree insert. A node out of depth-first
//! order still loads: its parent is looked up in the map.

use super::{path, DataTree};
use crate::jute::records::StatPersisted;
use bytes::Bytes;

pub struct Loader {
    tree: DataTree,
    /// The path of the last node loaded; each open ancestor is a prefix of it.
    path: String,
    /// Per open node: the length of its path, and the child names met so far.
    open: Vec<(usize, Vec<Box<str>>)>,
}

impl Loader {
    /// Starts from `tree`, which holds no nodes yet (its ACL cache may be filled).
    pub fn new(tree: DataTree) -> Loader {
        Loader {
            tree,
            path: String::new(),
            open: Vec::new(),
        }
    }

    pub fn tree_mut(&mut self) -> &mut DataTree {
        &mut self.tree
    }

    /// Adds the next node; its parent must have been loaded before it. A path ZooKeeper
    /// would not have created, or a node listed twice, is an error (the snapshot is bad).
    pub fn node(
        &mut self,
        p: String,
        data: Option<Bytes>,
        acl: i64,
        stat: StatPersisted,
    ) -> Result<(), String> {
        let well_formed = p == "/"
            || (p.starts_with('/') && !p.ends_with('/') && !p.contains("//") && !p.contains('\0'));
        if !well_formed {
            return Err(format!("invalid path {p:?} in the snapshot"));
        }
        if p != "/" {
            let parent = path::parent(&p);
            while let Some(&(len, _)) = self.open.last() {
                if &self.path[..len] == parent {
                    break;
                }
                self.close_last()?;
            }
            let name: Box<str> = path::name(&p).into();
            match self.open.last_mut() {
                Some((_, names)) => names.push(name),
                None => {
                    if !self.tree.nodes.contains_key(parent) {
                        return Err(format!("invalid tree: the parent of {p} is missing"));
                    }
                    self.tree.add_child(parent, &name);
                }
            }
        }
        self.path.clear();
        self.path.push_str(&p);
        self.open.push((p.len(), Vec::new()));
        self.tree.load_detached(p, data, acl, stat)
    }

    /// The tree, every child attached (then call [`DataTree::finish_load`]).
    pub fn finish(mut self) -> Result<DataTree, String> {
        while !self.open.is_empty() {
            self.close_last()?;
        }
        Ok(self.tree)
    }

    fn close_last(&mut self) -> Result<(), String> {
        let Some((len, names)) = self.open.pop() else {
            return Ok(());
        };
        if names.is_empty() {
            return Ok(());
        }
        let open = &self.path[..len];
        if !self.tree.nodes.contains_key(open) {
            return Err(format!(
                "invalid tree: {open} has children but is not loaded"
            ));
        }
        self.tree.add_children(open, names);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(paths: &[&str]) -> Result<DataTree, String> {
        let mut l = Loader::new(DataTree::empty(false));
        for p in paths {
            l.node(p.to_string(), None, -1, StatPersisted::default())?;
        }
        l.finish()
    }

    fn children(t: &DataTree, p: &str) -> Vec<String> {
        t.children_sorted(p)
    }

    #[test]
    fn depth_first_and_out_of_order_lists_give_the_same_tree() {
        let dfs = ["/", "/b", "/b/x", "/b/x/y", "/a", "/a/z", "/c"];
        let scrambled = ["/", "/b", "/a", "/c", "/a/z", "/b/x", "/b/x/y"];
        for list in [&dfs[..], &scrambled[..]] {
            let t = load(list).unwrap();
            assert_eq!(children(&t, "/"), ["a", "b", "c"], "{list:?}");
            assert_eq!(children(&t, "/b"), ["x"]);
            assert_eq!(children(&t, "/b/x"), ["y"]);
            assert_eq!(children(&t, "/a"), ["z"]);
            assert!(children(&t, "/c").is_empty());
            assert_eq!(t.node_count(), 7);
        }
    }

    #[test]
    fn a_node_before_its_parent_is_an_error() {
        let e = load(&["/", "/a/b"]).err().unwrap();
        assert!(e.contains("parent of /a/b is missing"), "{e}");
        // Under a sibling that is still open, too.
        assert!(load(&["/", "/a", "/b/c"]).is_err());
    }
}
