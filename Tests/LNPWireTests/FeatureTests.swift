import Testing

@testable import LNPWire

@Suite("BOLT-9 feature vectors")
struct FeatureTests {
    @Test func bitZeroIsLeastSignificantBitOfLastByte() {
        let vector = FeatureVector(bytes: [0x80, 0x00, 0x01])
        #expect(vector.isSet(0))
        #expect(vector.isSet(23))
        #expect(!vector.isSet(1) && !vector.isSet(22) && !vector.isSet(24) && !vector.isSet(-1))
        #expect(vector.setBits == [0, 23])
        #expect(FeatureVector(bits: [9]).bytes == [0x02, 0x00])
        #expect(FeatureVector(bits: [181]).bytes.count == 23)
    }

    @Test func bytesAreMinimal() {
        #expect(FeatureVector(bytes: [0, 0, 0x02]).bytes == [0x02])
        #expect(FeatureVector(bytes: [0, 0]) == FeatureVector())
        #expect(FeatureVector(bytes: [0, 0x02]) == FeatureVector(bytes: [0x02]))
        #expect(FeatureVector(bytes: [0, 0x02]).hashValue == FeatureVector(bytes: [0x02]).hashValue)
        var vector = FeatureVector(bits: [1, 17])
        vector.clear(17)
        #expect(vector.bytes == [0x02])
        vector.clear(1)
        #expect(vector.isEmpty && vector.bytes.isEmpty)
        vector.clear(100)
        #expect(vector.isEmpty)
    }

    @Test func unionAndIntersection() {
        let global = FeatureVector(bits: [1, 13])
        let local = FeatureVector(bits: [13, 17, 181])
        #expect(global.union(local).setBits == [1, 13, 17, 181])
        #expect(local.union(global) == global.union(local))
        #expect(global.intersection(local).setBits == [13])
        #expect(local.intersection(FeatureVector()).isEmpty)
        let message = InitMessage(globalFeatures: global, features: local)
        #expect(message.combinedFeatures.setBits == [1, 13, 17, 181])
    }

    @Test func supportsAndRequires() {
        let vector = FeatureVector(bits: [14, 17, 181])
        #expect(vector.supports(.paymentSecret) && vector.requires(.paymentSecret))
        #expect(vector.supports(.basicMPP) && !vector.requires(.basicMPP))
        #expect(vector.supports(.lnpLargeFrames) && !vector.requires(.lnpLargeFrames))
        #expect(!vector.supports(.optionAnchors))
        #expect(FeatureVector(features: [.basicMPP, .paymentSecret]).setBits == [15, 17])
        #expect(FeatureVector(features: [.basicMPP], required: true).setBits == [16])
    }

    @Test func catalogMatchesCurrentBolt9Table() {
        let expected: [(Int, String)] = [
            (0, "option_data_loss_protect"), (4, "option_upfront_shutdown_script"), (6, "gossip_queries"),
            (8, "var_onion_optin"), (10, "gossip_queries_ex"), (12, "option_static_remotekey"),
            (14, "payment_secret"), (16, "basic_mpp"), (18, "option_support_large_channel"),
            (22, "option_anchors"), (24, "option_route_blinding"), (26, "option_shutdown_anysegwit"),
            (28, "option_dual_fund"), (34, "option_quiesce"), (36, "option_attribution_data"),
            (38, "option_onion_messages"), (42, "option_provide_storage"), (44, "option_channel_type"),
            (46, "option_scid_alias"), (48, "option_payment_metadata"), (50, "option_zeroconf"),
            (60, "option_simple_close"), (62, "option_splice"),
        ]
        #expect(Feature.bolt9.map(\.evenBit) == expected.map(\.0))
        #expect(Feature.bolt9.map(\.name) == expected.map(\.1))
        let dependencies = Dictionary(uniqueKeysWithValues: Feature.all.map { ($0.name, $0.dependencies.map(\.name)) })
        #expect(dependencies.filter { !$0.value.isEmpty } == [
            "basic_mpp": ["payment_secret"],
            "option_zeroconf": ["option_scid_alias"],
            "option_simple_close": ["option_shutdown_anysegwit"],
        ])
        #expect(Feature.lnpLargeFrames.evenBit == 180 && Feature.lnpLargeFrames.oddBit == 181)
        #expect(Feature.feature(forBit: 181) == .lnpLargeFrames)
        #expect(Feature.feature(forBit: 3) == nil)
        #expect(Feature.initialRoutingSync.oddBit == 3)
    }

    private let known = Feature.bits(of: Feature.all)

    @Test func unknownOddBitsAreIgnored() throws {
        try FeatureVector(bits: [101, 1001, 5]).validate(known: known)
        try FeatureVector(bits: [101]).validate(known: [])
    }

    @Test func unknownEvenBitIsRejected() {
        #expect(throws: WireError(.unknownRequiredFeature(100), offset: 0, context: "features")) {
            try FeatureVector(bits: [100, 13]).validate(known: known)
        }
        // Our own feature is unknown to a peer that only knows BOLT-9: the required
        // form must be rejected, the optional form ignored.
        let bolt9Only = Feature.bits(of: Feature.bolt9)
        #expect(throws: WireError.self) { try FeatureVector(bits: [180]).validate(known: bolt9Only) }
        #expect(throws: Never.self) { try FeatureVector(bits: [181]).validate(known: bolt9Only) }
    }

    @Test func knownEvenBitsAreAccepted() throws {
        try FeatureVector(bits: [0, 12, 14, 16, 22, 180]).validate(known: known)
        // Either bit of a pair makes the pair known.
        try FeatureVector(bits: [180]).validate(known: [181])
    }

    @Test func bothBitsOfAPairAreAllowed() throws {
        let vector = FeatureVector(bits: [14, 15, 16, 17])
        try vector.validate(known: known)
        #expect(vector.requires(.paymentSecret) && vector.requires(.basicMPP))
    }

    @Test func missingDependencyIsRejected() {
        #expect(throws: WireError(.featureDependencyMissing(feature: 16, requires: 14), offset: 0, context: "features")) {
            try FeatureVector(bits: [17]).validate(known: known)
        }
        #expect(throws: WireError(.featureDependencyMissing(feature: 16, requires: 14), offset: 0, context: "features")) {
            try FeatureVector(bits: [16]).validate(known: known)
        }
        #expect(throws: WireError(.featureDependencyMissing(feature: 50, requires: 46), offset: 0, context: "features")) {
            try FeatureVector(bits: [51]).validate(known: known)
        }
        #expect(throws: WireError(.featureDependencyMissing(feature: 60, requires: 26), offset: 0, context: "features")) {
            try FeatureVector(bits: [61, 0]).validate(known: known)
        }
    }

    @Test func dependencySatisfiedByEitherBit() throws {
        try FeatureVector(bits: [17, 15]).validate(known: known)
        try FeatureVector(bits: [17, 14]).validate(known: known)
        try FeatureVector(bits: [16, 15]).validate(known: known)
        try FeatureVector(bits: [50, 47]).validate(known: known)
        try FeatureVector(bits: [60, 26]).validate(known: known)
    }

    @Test func dependenciesOfFeaturesWeDoNotKnowAreNotOurs() throws {
        // A peer setting an optional feature we do not know cannot be held to its dependencies.
        try FeatureVector(bits: [17]).validate(known: [])
    }

    @Test func errorOffsetPointsAtTheByteHoldingTheBit() {
        let vector = FeatureVector(bits: [1, 100])
        #expect(throws: WireError(.unknownRequiredFeature(100), offset: 0, context: "features")) {
            try vector.validate(known: [])
        }
        let deep = FeatureVector(bits: [17, 181])
        #expect(throws: WireError(.featureDependencyMissing(feature: 16, requires: 14), offset: deep.bytes.count - 3, context: "features")) {
            try deep.validate(known: known)
        }
    }

    @Test func initValidatesCombinedFeatures() {
        let split = InitMessage(globalFeatures: FeatureVector(bits: [15]), features: FeatureVector(bits: [17]))
        #expect(throws: Never.self) { try split.validateFeatures(known: known) }
        let missing = InitMessage(globalFeatures: FeatureVector(bits: [1]), features: FeatureVector(bits: [17]))
        #expect(throws: WireError(.featureDependencyMissing(feature: 16, requires: 14), offset: 0, context: "init.features")) {
            try missing.validateFeatures(known: known)
        }
    }

    @Test func descriptionNamesKnownBits() {
        #expect(FeatureVector(bits: [17, 99]).description == "FeatureVector(17 basic_mpp optional, 99)")
    }
}
