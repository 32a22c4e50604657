/// A BOLT-9 feature: a pair of bits, the even one meaning "required" and the
/// odd one (`evenBit + 1`) meaning "optional".
public struct Feature: Sendable, Hashable, CustomStringConvertible {
    public let evenBit: Int
    public let name: String
    /// Features that must also be set (as either bit) whenever this one is.
    public let dependencies: [Feature]

    public init(evenBit: Int, name: String, dependencies: [Feature] = []) {
        precondition(evenBit >= 0 && evenBit % 2 == 0, "feature bit pairs start at an even bit, got \(evenBit)")
        self.evenBit = evenBit
        self.name = name
        self.dependencies = dependencies
    }

    @inlinable public var oddBit: Int { evenBit + 1 }
    public var description: String { "\(name) (\(evenBit)/\(oddBit))" }

    // The BOLT-9 table at lightning/bolts a3772650 ("Channel Splicing (feature
    // 62/63)"). Dependencies are exactly its Dependencies column; several that
    // older revisions listed (gossip_queries_ex -> gossip_queries, payment_secret
    // -> var_onion_optin, option_anchors -> option_static_remotekey) were dropped
    // from the spec once their prerequisites became ASSUMED.
    public static let optionDataLossProtect = Feature(evenBit: 0, name: "option_data_loss_protect")
    public static let optionUpfrontShutdownScript = Feature(evenBit: 4, name: "option_upfront_shutdown_script")
    public static let gossipQueries = Feature(evenBit: 6, name: "gossip_queries")
    public static let varOnionOptin = Feature(evenBit: 8, name: "var_onion_optin")
    public static let gossipQueriesEx = Feature(evenBit: 10, name: "gossip_queries_ex")
    public static let optionStaticRemoteKey = Feature(evenBit: 12, name: "option_static_remotekey")
    public static let paymentSecret = Feature(evenBit: 14, name: "payment_secret")
    public static let basicMPP = Feature(evenBit: 16, name: "basic_mpp", dependencies: [.paymentSecret])
    public static let optionSupportLargeChannel = Feature(evenBit: 18, name: "option_support_large_channel")
    public static let optionAnchors = Feature(evenBit: 22, name: "option_anchors")
    public static let optionRouteBlinding = Feature(evenBit: 24, name: "option_route_blinding")
    public static let optionShutdownAnySegwit = Feature(evenBit: 26, name: "option_shutdown_anysegwit")
    public static let optionDualFund = Feature(evenBit: 28, name: "option_dual_fund")
    public static let optionQuiesce = Feature(evenBit: 34, name: "option_quiesce")
    public static let optionAttributionData = Feature(evenBit: 36, name: "option_attribution_data")
    public static let optionOnionMessages = Feature(evenBit: 38, name: "option_onion_messages")
    public static let optionProvideStorage = Feature(evenBit: 42, name: "option_provide_storage")
    public static let optionChannelType = Feature(evenBit: 44, name: "option_channel_type")
    public static let optionSCIDAlias = Feature(evenBit: 46, name: "option_scid_alias")
    public static let optionPaymentMetadata = Feature(evenBit: 48, name: "option_payment_metadata")
    public static let optionZeroconf = Feature(evenBit: 50, name: "option_zeroconf", dependencies: [.optionSCIDAlias])
    public static let optionSimpleClose = Feature(
        evenBit: 60, name: "option_simple_close", dependencies: [.optionShutdownAnySegwit])
    public static let optionSplice = Feature(evenBit: 62, name: "option_splice")

    /// Removed from BOLT-9 in 2024 (commit fc687e8). The spec only ever assigned the
    /// odd bit 3 and explicitly had no even bit, so this is not in `bolt9` and
    /// therefore not known by default; its `evenBit` 2 is only the pair it lives in.
    public static let initialRoutingSync = Feature(evenBit: 2, name: "initial_routing_sync")

    /// Our experimental frame-size extension; the odd bit 181 is the optional form.
    public static let lnpLargeFrames = Feature(evenBit: 180, name: "option_lnp_large_frames")
    /// LNP Node's reliable messaging: `lnp_message` envelopes with per-peer sequence numbers
    /// and cumulative `lnp_ack`s, so a message is delivered exactly once across reconnects.
    public static let lnpMessaging = Feature(evenBit: 182, name: "option_lnp_messaging")

    /// Every feature in the current BOLT-9 table, ascending by bit.
    public static let bolt9: [Feature] = [
        .optionDataLossProtect, .optionUpfrontShutdownScript, .gossipQueries, .varOnionOptin,
        .gossipQueriesEx, .optionStaticRemoteKey, .paymentSecret, .basicMPP,
        .optionSupportLargeChannel, .optionAnchors, .optionRouteBlinding, .optionShutdownAnySegwit,
        .optionDualFund, .optionQuiesce, .optionAttributionData, .optionOnionMessages,
        .optionProvideStorage, .optionChannelType, .optionSCIDAlias, .optionPaymentMetadata,
        .optionZeroconf, .optionSimpleClose, .optionSplice,
    ]

    /// Every feature this codec has a name for: BOLT-9 plus our own.
    public static let all: [Feature] = bolt9 + [.lnpLargeFrames, .lnpMessaging]

    /// Both bits of every given feature, the form `FeatureVector.validate(known:)` takes.
    public static func bits(of features: [Feature]) -> Set<Int> {
        var bits = Set<Int>()
        for feature in features {
            bits.insert(feature.evenBit)
            bits.insert(feature.oddBit)
        }
        return bits
    }

    /// The feature of `all` that owns `bit` (either of its pair), if any.
    public static func feature(forBit bit: Int) -> Feature? {
        let evenBit = bit & ~1
        return all.first { $0.evenBit == evenBit }
    }

    /// Human-readable name of a bit, for messages.
    public static func name(ofBit bit: Int) -> String {
        guard let feature = feature(forBit: bit) else { return "unknown" }
        return feature.name + (bit % 2 == 0 ? " required" : " optional")
    }
}
