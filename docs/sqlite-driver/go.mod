module github.com/canalhq/canal/docs/sqlite-driver

go 1.26.8

require (
	github.com/canalhq/canal/docs/sqlite-driver/workload v0.0.0-00010101000000-000000000000
	github.com/glebarez/sqlite v1.11.0
	github.com/ncruces/go-sqlite3 v0.22.0
	github.com/ncruces/go-sqlite3/gormlite v0.22.0
	gorm.io/gorm v1.31.2
)

require (
	github.com/dustin/go-humanize v1.0.1 // indirect
	github.com/glebarez/go-sqlite v1.21.2 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/jinzhu/inflection v1.0.0 // indirect
	github.com/jinzhu/now v1.1.5 // indirect
	github.com/mattn/go-isatty v0.0.17 // indirect
	github.com/ncruces/julianday v1.0.0 // indirect
	github.com/remyoudompheng/bigfft v0.0.0-20230129092748-24d4a6f8daec // indirect
	github.com/tetratelabs/wazero v1.8.2 // indirect
	golang.org/x/sys v0.29.0 // indirect
	golang.org/x/text v0.21.0 // indirect
	modernc.org/libc v1.22.5 // indirect
	modernc.org/mathutil v1.5.0 // indirect
	modernc.org/memory v1.5.0 // indirect
	modernc.org/sqlite v1.23.1 // indirect
)

replace github.com/canalhq/canal/docs/sqlite-driver/workload => ./workload
