"""A gRPC client as Python users write one: grpcio-reflection's descriptor database
(reflection v1alpha, the only version it speaks) lists helpline's services and fetches
a service's description, then grpcio-health-checking asks whether it serves.

Usage: reflection.py HOST:PORT SERVICE
Prints `service NAME` for each listed service, `described NAME METHODS`, `health STATUS`.
"""

import sys

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> None:
    target, service = sys.argv[1], sys.argv[2]
    with grpc.insecure_channel(target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        for name in database.get_services():
            print("service", name)
        described = DescriptorPool(database).FindServiceByName(service)
        print("described", described.full_name, len(described.methods))
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10
        )
        print("health", health_pb2.HealthCheckResponse.ServingStatus.Name(health.status))


if __name__ == "__main__":
    main()
