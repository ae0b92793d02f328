//! The store contract suite against a real Cassandra node (IOT_TEST_CASSANDRA).

iot_common::store_contract_tests!(optional async {
    iot_cassandra::test_node::store("cassandra store contract")
        .await
        .map(Box::new)
});
