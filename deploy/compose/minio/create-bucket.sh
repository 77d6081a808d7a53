#!/bin/sh
# One-shot, after MinIO is healthy: the catalog's bucket, and an access key
# for the catalog that may read and write objects (MinIO's built-in
# readwrite policy) but not administer the server. Run again, it changes
# nothing that is there already. Variables from deploy/compose/.env.
set -eu
mc alias set shop http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "shop/$CATALOG_BUCKET"
mc admin user add shop "$CATALOG_S3_ACCESS_KEY" "$CATALOG_S3_SECRET_KEY"
mc admin policy attach shop readwrite --user "$CATALOG_S3_ACCESS_KEY" 2>/dev/null \
  || echo "policy readwrite already attached to $CATALOG_S3_ACCESS_KEY"
echo "bucket $CATALOG_BUCKET ready for $CATALOG_S3_ACCESS_KEY"
