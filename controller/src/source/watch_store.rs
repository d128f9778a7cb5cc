//! One watch's objects, sorted by namespace and name: what the cluster source gathers from.
//!
//! A kube-rs reflector store keeps a hash map keyed by an object reference that copies the
//! name, namespace, UID and resourceVersion of every object; at 10,000 objects of four kinds
//! those keys and slots alone are about 10 MB. This store keeps the objects only, in a sorted
//! `Vec`, found by binary search on the names the objects already carry.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kube::runtime::watcher;
use kube::Resource;
use tokio::sync::watch;

/// An object's place in a sorted list: namespace, then name.
pub fn sort_key<K: Resource>(o: &K) -> (Option<&str>, &str) {
    (
        o.meta().namespace.as_deref(),
        o.meta().name.as_deref().unwrap_or(""),
    )
}

struct State<K> {
    sorted: Vec<Arc<K>>,
    /// The objects of a list in progress; they replace `sorted` when it ends.
    relisting: Option<Vec<Arc<K>>>,
}

/// The reading side, cloned freely.
pub struct WatchStore<K> {
    state: Arc<Mutex<State<K>>>,
    synced: watch::Receiver<bool>,
}

impl<K> Clone for WatchStore<K> {
    fn clone(&self) -> Self {
        WatchStore {
            state: self.state.clone(),
            synced: self.synced.clone(),
        }
    }
}

/// The writing side, owned by the watch's stream.
pub struct Writer<K> {
    state: Arc<Mutex<State<K>>>,
    synced: watch::Sender<bool>,
}

/// A new, empty store that has not synced, and its writer.
pub fn store<K>() -> (WatchStore<K>, Writer<K>) {
    let state = Arc::new(Mutex::new(State {
        sorted: Vec::new(),
        relisting: None,
    }));
    let (tx, rx) = watch::channel(false);
    (
        WatchStore {
            state: state.clone(),
            synced: rx,
        },
        Writer { state, synced: tx },
    )
}

/// A panic elsewhere while holding the lock leaves the list whole (every change is one
/// `Vec` operation), so a poisoned lock is taken as it is.
fn lock<K>(state: &Mutex<State<K>>) -> MutexGuard<'_, State<K>> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<K: Resource> WatchStore<K> {
    /// Every object, sorted.
    pub fn state(&self) -> Vec<Arc<K>> {
        lock(&self.state).sorted.clone()
    }

    /// The object named `namespace/name`, if the store holds it.
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        let state = lock(&self.state);
        let i = state
            .sorted
            .binary_search_by(|o| sort_key(&**o).cmp(&(namespace, name)))
            .ok()?;
        state.sorted.get(i).cloned()
    }

    /// Has the first list arrived?
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits for the first list; `false` when the watch ended before it.
    pub async fn wait_until_synced(&self) -> bool {
        self.synced.clone().wait_for(|s| *s).await.is_ok()
    }
}

/// The object to keep, packed tight. A freshly deserialized object carries the spare capacity
/// of every `Vec` serde grew while reading it, and sits among the freed pieces of whatever the
/// source stripped from it; its clone is allocated anew at exact sizes. At 10,000 objects a
/// kind that is about 15 MB of resident memory.
pub fn packed<K: Clone>(o: K) -> Arc<K> {
    Arc::new(o.clone())
}

impl<K: Resource + Clone> Writer<K> {
    /// Applies one watch event, as a reflector would: an object created, changed or deleted,
    /// or a whole new list that replaces the old one when it ends. Returns the objects the
    /// store no longer holds (an object's older version, a deleted object, the old list, an
    /// unfinished list), for whoever keeps something per object.
    pub fn apply(&mut self, event: watcher::Event<K>) -> Vec<Arc<K>> {
        let mut state = lock(&self.state);
        match event {
            watcher::Event::Apply(o) => {
                let at = state
                    .sorted
                    .binary_search_by(|x| sort_key(&**x).cmp(&sort_key(&o)));
                match at {
                    Ok(i) => vec![std::mem::replace(&mut state.sorted[i], packed(o))],
                    Err(i) => {
                        state.sorted.insert(i, packed(o));
                        Vec::new()
                    }
                }
            }
            watcher::Event::Delete(o) => {
                match state
                    .sorted
                    .binary_search_by(|x| sort_key(&**x).cmp(&sort_key(&o)))
                {
                    Ok(i) => vec![state.sorted.remove(i)],
                    Err(_) => Vec::new(),
                }
            }
            watcher::Event::Init => state.relisting.replace(Vec::new()).unwrap_or_default(),
            watcher::Event::InitApply(o) => {
                state.relisting.get_or_insert_with(Vec::new).push(packed(o));
                Vec::new()
            }
            watcher::Event::InitDone => {
                let mut list = state.relisting.take().unwrap_or_default();
                list.sort_by(|a, b| sort_key(&**a).cmp(&sort_key(&**b)));
                // A list never holds one name twice; should it, the later entry wins.
                let mut gone = Vec::new();
                let mut unique: Vec<Arc<K>> = Vec::with_capacity(list.len());
                for o in list {
                    match unique.last_mut() {
                        Some(last) if sort_key(&**last) == sort_key(&*o) => {
                            gone.push(std::mem::replace(last, o));
                        }
                        _ => unique.push(o),
                    }
                }
                gone.extend(std::mem::replace(&mut state.sorted, unique));
                drop(state);
                self.synced.send_replace(true);
                gone
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(ns: &str, name: &str, version: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.namespace = Some(ns.into());
        c.metadata.name = Some(name.into());
        c.metadata.resource_version = Some(version.into());
        c
    }

    fn label(c: &ConfigMap) -> String {
        let m = &c.metadata;
        format!(
            "{}/{}@{}",
            m.namespace.as_deref().unwrap_or(""),
            m.name.as_deref().unwrap_or(""),
            m.resource_version.as_deref().unwrap_or("")
        )
    }

    fn names(s: &WatchStore<ConfigMap>) -> Vec<String> {
        s.state().iter().map(|c| label(c)).collect()
    }

    fn gone(list: Vec<Arc<ConfigMap>>) -> Vec<String> {
        list.iter().map(|c| label(c)).collect()
    }

    #[test]
    fn events_keep_the_list_sorted_and_a_relist_replaces_it_when_it_ends() {
        let (store, mut writer) = store::<ConfigMap>();
        assert!(!store.is_synced());
        writer.apply(watcher::Event::Init);
        writer.apply(watcher::Event::InitApply(cm("b", "x", "1")));
        writer.apply(watcher::Event::InitApply(cm("a", "y", "2")));
        writer.apply(watcher::Event::InitApply(cm("a", "x", "3")));
        assert!(
            names(&store).is_empty(),
            "nothing shows before the list ends"
        );
        assert!(gone(writer.apply(watcher::Event::InitDone)).is_empty());
        assert!(store.is_synced());
        assert_eq!(names(&store), ["a/x@3", "a/y@2", "b/x@1"]);

        assert!(gone(writer.apply(watcher::Event::Apply(cm("a", "z", "4")))).is_empty());
        assert_eq!(
            gone(writer.apply(watcher::Event::Apply(cm("a", "x", "5")))),
            ["a/x@3"]
        );
        assert_eq!(
            gone(writer.apply(watcher::Event::Delete(cm("b", "x", "1")))),
            ["b/x@1"]
        );
        assert!(gone(writer.apply(watcher::Event::Delete(cm("c", "gone", "1")))).is_empty());
        assert_eq!(names(&store), ["a/x@5", "a/y@2", "a/z@4"]);
        assert_eq!(
            store
                .get(Some("a"), "y")
                .and_then(|c| c.metadata.resource_version.clone()),
            Some("2".into())
        );
        assert!(store.get(Some("b"), "x").is_none());

        // A watch that restarts lists again: the old objects serve until the new list ends;
        // a list cut short is dropped whole.
        writer.apply(watcher::Event::Init);
        writer.apply(watcher::Event::InitApply(cm("c", "v", "6")));
        assert_eq!(gone(writer.apply(watcher::Event::Init)), ["c/v@6"]);
        writer.apply(watcher::Event::InitApply(cm("c", "w", "7")));
        writer.apply(watcher::Event::InitApply(cm("c", "w", "8")));
        assert_eq!(names(&store), ["a/x@5", "a/y@2", "a/z@4"]);
        assert_eq!(
            gone(writer.apply(watcher::Event::InitDone)),
            ["c/w@7", "a/x@5", "a/y@2", "a/z@4"]
        );
        assert_eq!(names(&store), ["c/w@8"]);
    }

    #[tokio::test]
    async fn waiting_ends_at_the_first_list_or_when_the_writer_goes() {
        let (store, mut writer) = store::<ConfigMap>();
        let waiting = tokio::spawn({
            let store = store.clone();
            async move { store.wait_until_synced().await }
        });
        writer.apply(watcher::Event::Init);
        writer.apply(watcher::Event::InitDone);
        assert!(waiting.await.unwrap());

        let (store, writer) = super::store::<ConfigMap>();
        drop(writer);
        assert!(!store.wait_until_synced().await);
    }
}
