package testenv

// A fixed Consul CA for tests (ca= and ca_key= of user_data lines), minted
// once with clustersec.NewCA; OtherCA is a second, unrelated one. These keys
// protect nothing: they exist only so golden files stay stable.
const (
	TestCA    = "MIIBezCCASGgAwIBAgIQOyrbtVGfkryIJMQQcbLZ_zAKBggqhkjOPQQDAjAcMRowGAYDVQQDExFDb2RlbGFiIENvbnN1bCBDQTAeFw0yNTEyMzEyMzAwMDBaFw00NTEyMjcwMDAwMDBaMBwxGjAYBgNVBAMTEUNvZGVsYWIgQ29uc3VsIENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE58bYBTVULnaGsHgb8vt6Db_BfWcTcqRYdM97vHIfIQHyVSKh3mB7wye9OKbp9591VqV5AOtBb_Sam0j5D2McLqNFMEMwDgYDVR0PAQH_BAQDAgGGMBIGA1UdEwEB_wQIMAYBAf8CAQAwHQYDVR0OBBYEFBtFjC3GbKDIPVMrkcDJeQtYeHl8MAoGCCqGSM49BAMCA0gAMEUCIFeLSF8BZYcL0Gfj0xOPMI8Z-SXXp_kkDuYM7fDqPry_AiEAujGNaec4f2SbBXz-A3Igz8W6Zrbvzh7xkwSWYsvC2Rc"
	TestCAKey = "2wZPnu-mOcoYaaK9s4N888jOFMt2Sn6xdygoks4P4zM"

	OtherCA    = "MIIBezCCASGgAwIBAgIQXORAeX6zOBJxEMLpnx7dBDAKBggqhkjOPQQDAjAcMRowGAYDVQQDExFDb2RlbGFiIENvbnN1bCBDQTAeFw0yNTEyMzEyMzAwMDBaFw00NTEyMjcwMDAwMDBaMBwxGjAYBgNVBAMTEUNvZGVsYWIgQ29uc3VsIENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEhcV4NiVMxAjNU3Z7hEpbZzMCsL9E5k5i1RE_fc_0lf0Ho9uZiC6Hrx0bPJyDMQLRryaRmXlChbY7L-w44_QNf6NFMEMwDgYDVR0PAQH_BAQDAgGGMBIGA1UdEwEB_wQIMAYBAf8CAQAwHQYDVR0OBBYEFPB9WWyktuID9kTaH4cpqxZmXtd6MAoGCCqGSM49BAMCA0gAMEUCIFBskyNrfFv1_hvPNANlG89MxgxIbibhlyDK4fx5BhAZAiEA0UXLwW8dT0ao8JZH4-KH408WikKZ3Z9Tr0enuG0xtWY"
	OtherCAKey = "8VecEJ-gs8MJIIAvH8BmyoH-IPoKq_g4gPwilsnpw3k"
)

// The ACL tokens clustersec derives from TestCAKey (pinned here so that a
// change to the derivation shows in a test).
const (
	TestManagementToken = "0f3cd6b2-644a-4f4c-abe7-c6d5a86cfeeb"
	TestAPIToken        = "1341d94b-99b2-422e-94cc-9d31b156e007" // role/prod/api
	TestNeo4jToken      = "df263943-b08f-4783-9e3b-49bc516dbae8" // role/prod/neo4j
)

// ServerTLS and ClientTLS are the security settings of a test user_data
// line for a Consul server and a client of the test CA: ca= (and ca_key=),
// and for a client consul_token= (the api role's token in env prod).
const (
	ServerTLS = "ca=" + TestCA + " ca_key=" + TestCAKey
	ClientTLS = "ca=" + TestCA + " consul_token=" + TestAPIToken
)
