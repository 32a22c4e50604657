/// A binary min-heap of (deadline, request id). Entries of requests that finished
/// early stay until they surface (the owner checks them against its pending table)
/// or until `compact` rebuilds the heap.
struct DeadlineHeap {
    struct Entry {
        var deadline: UInt64
        var id: UInt64
    }

    private(set) var entries: [Entry] = []

    var count: Int { entries.count }
    var earliest: Entry? { entries.first }

    mutating func push(deadline: UInt64, id: UInt64) {
        entries.append(Entry(deadline: deadline, id: id))
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].deadline < entries[parent].deadline else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    mutating func popEarliest() -> Entry? {
        guard !entries.isEmpty else { return nil }
        entries.swapAt(0, entries.count - 1)
        let top = entries.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            guard left < entries.count else { break }
            let right = left + 1
            let smaller = right < entries.count && entries[right].deadline < entries[left].deadline ? right : left
            guard entries[smaller].deadline < entries[parent].deadline else { break }
            entries.swapAt(parent, smaller)
            parent = smaller
        }
        return top
    }

    /// Rebuilds from the live entries only.
    mutating func rebuild(from live: some Sequence<Entry>) {
        entries.removeAll(keepingCapacity: true)
        for entry in live { push(deadline: entry.deadline, id: entry.id) }
    }
}
