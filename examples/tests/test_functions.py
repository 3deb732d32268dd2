"""The example apps' Python functions, run against the moto server (AWS_ENDPOINT_URL) and an HTTP
endpoint that answers as the license agent's documented contract says (the agent's own server
arrives with issue 7): 200 when a feature is entitled, 403 with {"code", "reason"} when not.

Run by tests/tests/example_functions.rs; by hand:
    AWS_ENDPOINT_URL=http://localhost:PORT .venv/bin/python -m unittest examples/tests/test_functions.py
"""

import http.server
import importlib.util
import json
import os
import sys
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BLOG = os.path.join(HERE, "..", "serverless-blog", "functions")
WORKER = os.path.join(HERE, "..", "queue-worker", "functions", "worker")

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["POSTS_TABLE"] = "consign-test-posts"
os.environ["USERS_TABLE"] = "consign-test-users"
os.environ["SITE_BUCKET"] = "consign-test-site"


class Agent(http.server.BaseHTTPRequestHandler):
    """Answers entitlement checks from `Agent.answers` and records usage reports."""

    answers = {}
    usage = []

    def do_GET(self):
        feature = self.path.rsplit("/", 1)[-1]
        status, body = Agent.answers.get(feature, (403, {"code": "not_entitled", "reason": f"{feature} is not licensed"}))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        Agent.usage.append(json.loads(self.rfile.read(length)))
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args):
        pass


def load(name, folder):
    sys.path[:0] = [folder, os.path.join(BLOG, "shared")]
    try:
        spec = importlib.util.spec_from_file_location(name, os.path.join(folder, "app.py" if "worker" not in name else "worker.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        del sys.path[:2]


class Functions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Agent)
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        os.environ["LICENSE_AGENT_URL"] = f"http://127.0.0.1:{cls.server.server_address[1]}"
        import boto3

        dynamodb = boto3.resource("dynamodb")
        posts = dynamodb.create_table(
            TableName=os.environ["POSTS_TABLE"],
            KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}, {"AttributeName": "post_id", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}, {"AttributeName": "post_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        users = dynamodb.create_table(
            TableName=os.environ["USERS_TABLE"],
            KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for i in range(3):
            posts.put_item(Item={"user_id": "ada", "post_id": f"2026-11-0{i + 1}", "title": f"Post {i + 1}"})
        posts.put_item(Item={"user_id": "bob", "post_id": "2026-11-05", "title": "Bob's post"})
        users.put_item(Item={"user_id": "ada", "name": "Ada"})
        users.put_item(Item={"user_id": "bob", "name": "Bob"})
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=os.environ["SITE_BUCKET"])
        cls.s3 = s3
        cls.posts = load("posts_app", os.path.join(BLOG, "posts"))
        cls.site = load("site_app", os.path.join(BLOG, "site"))
        cls.users = load("users_app", os.path.join(BLOG, "users"))
        cls.worker = load("worker", WORKER)

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()

    def setUp(self):
        Agent.answers = {"posts": (200, {"allowed": True}), "users": (200, {"allowed": True})}
        Agent.usage = []

    def call(self, module, query=None):
        response = module.handler({"queryStringParameters": query}, None)
        return response["statusCode"], json.loads(response["body"])

    def test_posts_of_one_user_newest_first(self):
        status, body = self.call(self.posts, {"user_id": "ada"})
        self.assertEqual(status, 200)
        self.assertEqual([p["title"] for p in body["posts"]], ["Post 3", "Post 2", "Post 1"])

    def test_posts_needs_a_user_id(self):
        status, body = self.call(self.posts, {})
        self.assertEqual(status, 400)
        self.assertIn("user_id", body["error"])

    def test_users_lists_everyone(self):
        status, body = self.call(self.users)
        self.assertEqual(status, 200)
        self.assertEqual(sorted(u["name"] for u in body["users"]), ["Ada", "Bob"])

    def test_a_feature_not_licensed_is_403(self):
        Agent.answers["posts"] = (403, {"code": "not_entitled", "reason": "posts is not in your plan"})
        status, body = self.call(self.posts, {"user_id": "ada"})
        self.assertEqual((status, body["error"]), (403, "posts is not in your plan"))

    def test_a_lapsed_license_is_402(self):
        Agent.answers["users"] = (403, {"code": "expired", "reason": "the license expired"})
        status, body = self.call(self.users)
        self.assertEqual((status, body["error"]), (402, "the license expired"))

    def test_an_unreachable_agent_is_503_not_a_free_pass(self):
        saved = self.posts.check.__globals__["AGENT_URL"]
        self.posts.check.__globals__["AGENT_URL"] = "http://127.0.0.1:9"
        try:
            status, _ = self.call(self.posts, {"user_id": "ada"})
        finally:
            self.posts.check.__globals__["AGENT_URL"] = saved
        self.assertEqual(status, 503)

    def test_site_says_what_to_do_before_the_page_is_uploaded(self):
        response = self.site.handler({}, None)
        self.assertEqual(response["statusCode"], 503)
        self.assertIn("run the installer again", response["body"])

    def test_site_serves_the_uploaded_page_from_the_private_bucket(self):
        page = open(os.path.join(HERE, "..", "serverless-blog", "static", "index.html")).read()
        self.s3.put_object(Bucket=os.environ["SITE_BUCKET"], Key="index.html", Body=page.encode())
        try:
            response = self.site.handler({}, None)
        finally:
            self.s3.delete_object(Bucket=os.environ["SITE_BUCKET"], Key="index.html")
        self.assertEqual(response["statusCode"], 200)
        self.assertTrue(response["headers"]["Content-Type"].startswith("text/html"))
        self.assertEqual(response["body"], page)

    def test_worker_meters_done_jobs_and_returns_failed_ones(self):
        event = {"Records": [
            {"messageId": "1", "body": json.dumps({"id": "a", "kind": "resize"})},
            {"messageId": "2", "body": "not json"},
            {"messageId": "3", "body": json.dumps({"id": "b", "kind": "resize"})},
        ]}
        result = self.worker.handler(event, None)
        self.assertEqual(result, {"batchItemFailures": [{"itemIdentifier": "2"}]})
        self.assertEqual(Agent.usage, [{"dimension": "jobs", "quantity": 2}])


class OrderValidation(unittest.TestCase):
    """The order workflow's Python step (examples/order-workflow/functions/validate)."""

    @classmethod
    def setUpClass(cls):
        path = os.path.join(HERE, "..", "order-workflow", "functions", "validate", "validate.py")
        spec = importlib.util.spec_from_file_location("order_validate", path)
        cls.validate = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(cls.validate)

    def test_a_good_order_is_normalised_for_the_price_step(self):
        order = {"order_id": "o-1", "customer": "globex", "currency": "eur", "note": "dropped",
                 "lines": [{"sku": "A-1", "quantity": 2, "unit_price_cents": 1250, "x": 1}]}
        self.assertEqual(self.validate.handler(order, None), {"valid": True, "order": {
            "order_id": "o-1", "customer": "globex", "currency": "EUR",
            "lines": [{"sku": "A-1", "quantity": 2, "unit_price_cents": 1250}]}})

    def test_a_bad_order_names_every_problem(self):
        answer = self.validate.handler({"order_id": "o-2", "currency": "XYZ", "lines": [
            {"sku": "bad sku", "quantity": 0, "unit_price_cents": True}, "nope"]}, None)
        self.assertFalse(answer["valid"])
        self.assertEqual(answer["order_id"], "o-2")
        reasons = " | ".join(answer["reasons"])
        for expected in ("customer", "currency", "line 1: sku", "line 1: quantity",
                         "line 1: unit_price_cents", "line 2 is not an object"):
            self.assertIn(expected, reasons)
        self.assertEqual(self.validate.handler("not an object", None)["reasons"],
                         ["the order is not a JSON object"])


if __name__ == "__main__":
    unittest.main()
