import Foundation

/// The node's data directory: `--data-dir`, else `~/.lnp-node`.
public enum DataDirectory {
    public static func resolve(_ option: String?) -> String {
        let raw = option ?? "~/.lnp-node"
        let expanded: String
        if raw == "~" || raw.hasPrefix("~/") {
            let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
            expanded = home + raw.dropFirst()
        } else {
            expanded = raw
        }
        // Absolute, without a trailing slash: it names socket files and must be stable.
        let absolute = expanded.hasPrefix("/") ? expanded : FileManager.default.currentDirectoryPath + "/" + expanded
        return absolute.count > 1 && absolute.hasSuffix("/") ? String(absolute.dropLast()) : absolute
    }
}
