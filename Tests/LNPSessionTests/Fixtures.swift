import Foundation
import LNPCrypto

/// Spec vectors copied into the test bundle (tests never read outside the project).
enum Fixture {
    static func json(_ name: String) throws -> [String: Any] {
        guard let url = Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures") else {
            throw FixtureError.missing(name)
        }
        guard let object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] else {
            throw FixtureError.malformed(name)
        }
        return object
    }

    enum FixtureError: Error { case missing(String), malformed(String), missingKey(String) }
}

extension Dictionary where Key == String, Value == Any {
    func string(_ key: String) throws -> String {
        guard let value = self[key] as? String else { throw Fixture.FixtureError.missingKey(key) }
        return value
    }

    func bytes(_ key: String) throws -> [UInt8] {
        guard let value = Hex.decode(try string(key)) else { throw Fixture.FixtureError.malformed(key) }
        return value
    }

    func object(_ key: String) throws -> [String: Any] {
        guard let value = self[key] as? [String: Any] else { throw Fixture.FixtureError.missingKey(key) }
        return value
    }

    func objects(_ key: String) throws -> [[String: Any]] {
        guard let value = self[key] as? [[String: Any]], !value.isEmpty else { throw Fixture.FixtureError.missingKey(key) }
        return value
    }
}
