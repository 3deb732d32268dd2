# An air-gapped customer: the admin makes an install key and sends the vendor its public half;
# the vendor exports one kit file per version, wrapped to it.
installer keygen -o install-key
vendor-portal kit export --license globex.lic --version 1.0.0 --recipient install-key/install.pub -o blog-1.0.0.kit
vendor-portal kit export --license globex.lic --version 1.1.0 --recipient install-key/install.pub -o blog-1.1.0.kit

# On the air-gapped machine (its own installer home), with the kits, the key and no portal.
export CONSIGN_INSTALLER_HOME=$PWD/air-gapped-home
installer install --stack blog-offline --kit blog-1.0.0.kit --key install-key --trust-root "$ROOT" --yes
installer upgrade --stack blog-offline --kit blog-1.1.0.kit --key install-key --trust-root "$ROOT" --yes
installer uninstall --stack blog-offline --yes
export CONSIGN_INSTALLER_HOME=$PWD/installer-home
