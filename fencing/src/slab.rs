//! A minimal slab: stable `usize` keys, O(1) insert and remove, and storage
//! that is reused, so a steady state of inserts and removes allocates nothing.

#[derive(Debug)]
pub(crate) struct Slab<T> {
    entries: Vec<Entry<T>>,
    /// Head of the free list threaded through vacant entries.
    next_free: usize,
    len: usize,
}

#[derive(Debug)]
enum Entry<T> {
    Occupied(T),
    Vacant { next: usize },
}

/// Once a slab empties, capacity beyond this is given back, so a parent that
/// once had a million children does not keep their slots.
const KEEP_CAPACITY: usize = 64;

impl<T> Slab<T> {
    pub(crate) const fn new() -> Self {
        Self {
            entries: Vec::new(),
            next_free: 0,
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn insert(&mut self, value: T) -> usize {
        let key = self.next_free;
        if key == self.entries.len() {
            self.entries.push(Entry::Occupied(value));
            self.next_free = key + 1;
        } else {
            match std::mem::replace(&mut self.entries[key], Entry::Occupied(value)) {
                Entry::Vacant { next } => self.next_free = next,
                Entry::Occupied(_) => unreachable!("free list points at an occupied entry"),
            }
        }
        self.len += 1;
        key
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match self.entries.get_mut(key) {
            Some(Entry::Occupied(value)) => Some(value),
            _ => None,
        }
    }

    /// Removes and returns the value at `key`, if it is occupied.
    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        let entry = self.entries.get_mut(key)?;
        if matches!(entry, Entry::Vacant { .. }) {
            return None;
        }
        let Entry::Occupied(value) = std::mem::replace(
            entry,
            Entry::Vacant {
                next: self.next_free,
            },
        ) else {
            unreachable!()
        };
        self.next_free = key;
        self.len -= 1;
        if self.len == 0 {
            self.entries.clear();
            self.entries.shrink_to(KEEP_CAPACITY);
            self.next_free = 0;
        }
        Some(value)
    }

    /// Empties the slab, returning its values.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = T> {
        self.len = 0;
        self.next_free = 0;
        std::mem::take(&mut self.entries)
            .into_iter()
            .filter_map(|entry| match entry {
                Entry::Occupied(value) => Some(value),
                Entry::Vacant { .. } => None,
            })
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().filter_map(|entry| match entry {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant { .. } => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Slab;

    #[test]
    fn keys_are_reused_and_capacity_is_returned() {
        let mut slab = Slab::new();
        let a = slab.insert('a');
        let b = slab.insert('b');
        assert_eq!(slab.remove(a), Some('a'));
        assert_eq!(slab.remove(a), None, "a key is removed once");
        let c = slab.insert('c');
        assert_eq!(c, a, "a vacant key is reused");
        assert_eq!(slab.get_mut(b), Some(&mut 'b'));
        assert_eq!(slab.len(), 2);

        let mut big = Slab::new();
        let keys: Vec<_> = (0..10_000).map(|i| big.insert(i)).collect();
        for key in keys {
            big.remove(key);
        }
        assert_eq!(big.len(), 0);
        assert!(big.entries.capacity() <= super::KEEP_CAPACITY);
    }

    #[test]
    fn drain_returns_occupied_values() {
        let mut slab = Slab::new();
        let a = slab.insert(1);
        slab.insert(2);
        slab.remove(a);
        assert_eq!(slab.drain().collect::<Vec<_>>(), [2]);
        assert_eq!(slab.len(), 0);
        assert_eq!(slab.insert(3), 0);
    }
}
