import hydra
from omegaconf import OmegaConf
@hydra.main(version_base="1.3", config_path="pkg://riskml.conf", config_name="generate")
def main(cfg):
    print(OmegaConf.to_yaml(cfg))
if __name__ == "__main__":
    main()
