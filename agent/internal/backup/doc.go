// Package backup backs up the neo4j role's database: dump (Community,
// database stopped within a window) or online backup (Enterprise), check
// every dump, upload it with a manifest of SHA-256 checksums to an S3 API
// (DigitalOcean Spaces), read the checksums back, apply retention, and
// restore a backup by id. Every run records its outcome in StateFile.
package backup
