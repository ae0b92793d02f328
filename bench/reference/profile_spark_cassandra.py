#!/usr/bin/env python3
"""The regional profile the seed system's way: an Apache Spark job (local mode) reading the
readings from Cassandra through the Spark Cassandra Connector, with the definition of
profile_spark.py (daily sums as stored, continuous percentiles, hourly means over meter-days).
Written for this project's bench/cluster.sh; not part of the product.

Usage: profile_spark_cassandra.py HOST KEYSPACE FROM TO OUT.csv [--threads N] [--jars A,B,...]
  FROM, TO: the window as RFC 3339 UTC instants (TO excluded), e.g. the run's window_from/to.
  --jars: the connector's jars (bench/cluster.sh resolves them with Maven); without it Spark
  fetches com.datastax.spark:spark-cassandra-connector_2.12:3.5.1 itself.
Needs pyspark 3.5 (Scala 2.12). Prints the query time (session start-up excluded)."""
import argparse, time
from pyspark.sql import SparkSession, functions as F

p = argparse.ArgumentParser(description="the regional profile in Spark, reading Cassandra")
for name in ("host", "keyspace", "start", "end", "out"):
    p.add_argument(name)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--jars")
a = p.parse_args()
host, keyspace, start, end, out, threads, jars = a.host, a.keyspace, a.start, a.end, a.out, a.threads, a.jars
builder = SparkSession.builder.master(f"local[{threads}]").appName("regional-profile-cassandra")
builder = (builder.config("spark.jars", jars) if jars else
           builder.config("spark.jars.packages", "com.datastax.spark:spark-cassandra-connector_2.12:3.5.1"))
spark = (builder
         .config("spark.sql.extensions", "com.datastax.spark.connector.CassandraSparkExtensions")
         .config("spark.cassandra.connection.host", host)
         .config("spark.cassandra.input.consistency.level", "ONE")
         .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
         .config("spark.sql.shuffle.partitions", str(threads * 4)).getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
t0 = time.perf_counter()
raw = (spark.read.format("org.apache.spark.sql.cassandra")
       .options(keyspace=keyspace, table="readings_by_region_shard").load()
       .where((F.col("ts") >= F.lit(start).cast("timestamp")) & (F.col("ts") < F.lit(end).cast("timestamp"))))
r = raw.withColumnRenamed("region", "region_id").withColumn("lt", F.from_utc_timestamp("ts", "Europe/London"))
mh = (r.groupBy("region_id", "meter_id", F.to_date("lt").alias("d"), F.hour("lt").alias("h"))
       .agg(F.sum("kwh").alias("kwh"), F.count("*").alias("n"))).cache()
md = mh.groupBy("region_id", "meter_id", "d").agg(F.sum("kwh").alias("kwh"), F.sum("n").alias("n"))
wk = F.dayofweek("d")  # 1 = Sunday, 7 = Saturday
daily = (md.groupBy("region_id").agg(
    F.countDistinct("meter_id").alias("meters"), F.sum("n").alias("readings"), F.avg("kwh").alias("avg_daily_kwh"),
    F.percentile("kwh", 0.5).alias("p50_daily_kwh"), F.percentile("kwh", 0.9).alias("p90_daily_kwh"),
    F.avg(F.when(~wk.isin(1, 7), F.col("kwh"))).alias("weekday_avg_daily_kwh"),
    F.avg(F.when(wk.isin(1, 7), F.col("kwh"))).alias("weekend_avg_daily_kwh")).orderBy("region_id").collect())
hourly = mh.groupBy("region_id", "h").agg(F.avg("kwh").alias("kwh")).orderBy("region_id", "h").collect()
dt = time.perf_counter() - t0
rows = sum(row["readings"] for row in daily)
print(f"spark {spark.version} on Cassandra: {len(daily)} regions, {rows} readings in {dt:.3f} s = {rows / dt:.0f} rows/s")
curves = {}
for row in hourly:
    curves.setdefault(row["region_id"], [0.0] * 24)[row["h"]] = row["kwh"]
with open(out, "w") as f:
    f.write("region_id,meters,readings,avg_daily_kwh,p50_daily_kwh,p90_daily_kwh,weekday_avg_daily_kwh,weekend_avg_daily_kwh,peak_hour," + ",".join(f"h{h:02d}" for h in range(24)) + "\n")
    for row in daily:
        c = curves[row["region_id"]]
        f.write(",".join(str(x) for x in row) + f",{max(range(24), key=lambda h: c[h])}," + ",".join(f"{x:.6f}" for x in c) + "\n")
spark.stop()
