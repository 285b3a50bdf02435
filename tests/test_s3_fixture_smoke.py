import pytest

from tests.support.s3 import S3Server


@pytest.mark.integration
def test_s3_server_enforces_credentials(s3_server: S3Server, s3_bucket: str) -> None:
    import boto3
    from botocore.exceptions import ClientError

    s3_server.client().put_object(Bucket=s3_bucket, Key="k", Body=b"v")
    intruder = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key="wrong",
        region_name="us-east-1",
    )
    with pytest.raises(ClientError) as err:
        intruder.get_object(Bucket=s3_bucket, Key="k")
    assert err.value.response["Error"]["Code"] in {"SignatureDoesNotMatch", "AccessDenied"}
