package monitor

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/codelab-app/infra/agent/internal/backup"
)

var (
	descBackupAge        = prometheus.NewDesc("codelab_backup_age_seconds", "Age of the newest verified, uploaded backup (absent when there is none).", nil, nil)
	descBackupMaxAge     = prometheus.NewDesc("codelab_backup_max_age_seconds", "Age above which the backup check turns critical.", nil, nil)
	descBackupPresent    = prometheus.NewDesc("codelab_backup_verified_present", "1 when a verified, uploaded backup exists.", nil, nil)
	descBackupNewestTime = prometheus.NewDesc("codelab_backup_newest_verified_timestamp_seconds", "When the newest verified backup was taken.", nil, nil)
	descLastRunTime      = prometheus.NewDesc("codelab_backup_last_run_timestamp_seconds", "When the last backup run finished.", nil, nil)
	descLastSuccess      = prometheus.NewDesc("codelab_backup_last_run_success", "1 when the last backup run succeeded, 0 when it failed.", []string{"step"}, nil)
	descLastSize         = prometheus.NewDesc("codelab_backup_last_run_size_bytes", "Size of the last run's dumps.", nil, nil)
	descLastDuration     = prometheus.NewDesc("codelab_backup_last_run_duration_seconds", "Wall time of the last backup run.", nil, nil)
	descLastDowntime     = prometheus.NewDesc("codelab_backup_last_run_downtime_seconds", "How long the last run kept the database stopped.", nil, nil)
	descQuarantined      = prometheus.NewDesc("codelab_backup_quarantined_objects", "Objects in the bucket's quarantine/ folder (backups whose manifest cannot be used), as the last backup run found them.", nil, nil)
	descStoreSize        = prometheus.NewDesc("codelab_neo4j_store_size_bytes", "Size of the Neo4j data volume.", nil, nil)
	descDiskFree         = prometheus.NewDesc("codelab_disk_free_bytes", "Free bytes on the filesystem of path.", []string{"path"}, nil)
	descContainerUp      = prometheus.NewDesc("codelab_container_running", "1 when the database container runs.", []string{"container"}, nil)
	descContainerHealthy = prometheus.NewDesc("codelab_container_healthy", "1 when Docker calls the database container healthy.", []string{"container"}, nil)
	descContainerRestart = prometheus.NewDesc("codelab_container_restarts", "Restarts of the database container by its restart policy.", []string{"container"}, nil)
	descBoltUp           = prometheus.NewDesc("codelab_neo4j_bolt_up", "1 when the Bolt port answers a handshake.", nil, nil)
	descHTTPUp           = prometheus.NewDesc("codelab_neo4j_http_up", "1 when the HTTP port answers 2xx.", nil, nil)
	descRenderLag        = prometheus.NewDesc("codelab_consul_template_render_lag_seconds", "How long the latest Consul KV change waited (or is waiting) for consul-template to render it.", nil, nil)
	descProbeError       = prometheus.NewDesc("codelab_monitor_probe_error", "1 for each probe that could not answer.", []string{"probe"}, nil)
)

type collector struct{ m *Monitor }

func (c collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	v := c.m.Cached(context.Background())
	g := func(d *prometheus.Desc, val float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, val, labels...)
	}
	g(descBackupMaxAge, v.MaxAgeSeconds)
	if n := v.Backup.NewestVerified; n != nil {
		g(descBackupPresent, 1)
		g(descBackupAge, v.BackupAgeSeconds)
		g(descBackupNewestTime, float64(n.At.Unix()))
	} else {
		g(descBackupPresent, 0)
	}
	g(descQuarantined, float64(v.QuarantinedObjects))
	if r := v.Backup.LastRun; r != nil {
		g(descLastRunTime, float64(r.FinishedAt.Unix()))
		g(descLastSuccess, b2f(r.Result == backup.ResultOK), r.Step)
		g(descLastSize, float64(r.SizeBytes))
		g(descLastDuration, r.Duration().Seconds())
		g(descLastDowntime, r.Downtime().Seconds())
	}
	if _, failed := v.Errors["store-size"]; !failed && c.m.Probes.StorePath != nil {
		g(descStoreSize, float64(v.StoreSizeBytes))
	}
	for p, free := range v.DiskFreeBytes {
		g(descDiskFree, float64(free), p)
	}
	name := c.m.Config.Service
	if _, failed := v.Errors["container"]; !failed && c.m.Probes.Container != nil {
		g(descContainerUp, b2f(v.Container == "running"), name)
		g(descContainerHealthy, b2f(v.ContainerHealth == "healthy"), name)
		g(descContainerRestart, float64(v.ContainerRestarts), name)
	}
	if c.m.Probes.Bolt != nil {
		g(descBoltUp, b2f(v.BoltUp))
	}
	if c.m.Probes.HTTP != nil {
		g(descHTTPUp, b2f(v.HTTPUp))
	}
	if _, failed := v.Errors["render-lag"]; !failed && c.m.Probes.RenderLag != nil {
		g(descRenderLag, v.RenderLagSeconds)
	}
	for p := range v.Errors {
		g(descProbeError, 1, p)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
