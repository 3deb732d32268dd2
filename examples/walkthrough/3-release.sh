# The vendor publishes releases. The app folder is a copy, so nothing is written into the
# checkout; the license agent rides in the bundle as a Lambda layer, signed like the rest.
cp -R "$CONSIGN_REPO/examples/serverless-blog" blog
vendor-portal release agent-layer --agent "$(command -v license-agent)" --trust acme-keys/keyset.json -o blog/layers/license-agent
vendor-portal release build blog --keys acme-keys -o blog-1.0.0.bundle
vendor-portal release push blog-1.0.0.bundle --keys acme-keys --channel stable

# The next version: change a function, bump the version, and reuse the unchanged objects' keys so
# only what changed goes up.
echo "# 1.1.0: faster listing" >> blog/functions/posts/app.py
sed -i.bak 's/^version = "1.0.0"/version = "1.1.0"/' blog/consign.toml
vendor-portal release build blog --keys acme-keys -o blog-1.1.0.bundle --previous-keys blog-1.0.0.bundle.keys
vendor-portal release push blog-1.1.0.bundle --keys acme-keys --channel beta
vendor-portal release promote serverless-blog 1.1.0 --channel stable --keys acme-keys
vendor-portal release list serverless-blog
vendor-portal app publish serverless-blog       # on the marketplace from now on
