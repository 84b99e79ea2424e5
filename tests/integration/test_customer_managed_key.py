"""With the KmsKeyArn parameter set, the stack's stored data uses that key (the template's Fn::If branches, as the
local runtime resolves them); without it, the AWS-managed encryption stays."""

from localdev.aws.runtime import local_stack

KEY = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"


def test_a_customer_managed_key_reaches_queues_bucket_and_table() -> None:
    with local_stack(parameters={"KmsKeyArn": KEY}) as stack:
        raw = stack.clients.sqs.get_queue_attributes(QueueUrl=stack.queue_url("RawQueue"), AttributeNames=["All"])
        assert raw["Attributes"]["KmsMasterKeyId"] == KEY
        (rule,) = stack.clients.s3.get_bucket_encryption(Bucket=stack.resource_name("StagingBucket"))[
            "ServerSideEncryptionConfiguration"
        ]["Rules"]
        assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY}
        table = stack.clients.dynamodb.describe_table(TableName=stack.resource_name("StateTable"))["Table"]
        assert (table["SSEDescription"]["SSEType"], table["SSEDescription"]["KMSMasterKeyArn"]) == ("KMS", KEY)


def test_without_a_key_the_stack_keeps_aws_managed_encryption() -> None:
    with local_stack() as stack:
        raw = stack.clients.sqs.get_queue_attributes(QueueUrl=stack.queue_url("RawQueue"), AttributeNames=["All"])
        assert "KmsMasterKeyId" not in raw["Attributes"]
        (rule,) = stack.clients.s3.get_bucket_encryption(Bucket=stack.resource_name("StagingBucket"))[
            "ServerSideEncryptionConfiguration"
        ]["Rules"]
        assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
